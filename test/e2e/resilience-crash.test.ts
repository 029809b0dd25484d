import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { SqliteBudgetStore } from "../../src/budget/sqlite-store.js";
import { Ledger } from "../../src/ledger/ledger.js";
import type { PaymentSummary } from "../../src/ledger/ledger.js";
import { databasePath } from "../../src/payment/stores.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { BASE, viaProxy } from "../support/resilience-world.js";
import { startTestSandbox } from "../support/sandbox-fixture.js";

/**
 * Honest state after kill -9, with a real `stoka-proxy start` process: a payment killed
 * between its reservation and its signing is released on restart; one killed after its header
 * was handed to the socket becomes indeterminate and stays counted. And SIGUSR2 flips the
 * kill switch of the running process.
 */
const BUDGETS = [{ name: "crash", limits: { day: "1 USDC" } }];
const BODY = Buffer.from("c".repeat(42));

let sb: Sandbox;
let dataDir: string;
let proc: ProxyProcess | undefined;
beforeAll(async () => {
  sb = await startTestSandbox();
});
afterAll(async () => {
  await proc?.stop("SIGKILL");
  await sb.close();
});

function latest(): PaymentSummary[] {
  const db = openDatabase(databasePath({ dataDir } as never));
  try {
    return new Ledger(db).latest();
  } finally {
    db.close();
  }
}

async function budgetUsed(): Promise<bigint> {
  const db = openDatabase(databasePath({ dataDir } as never));
  try {
    const b: Budget = {
      name: "crash",
      match: {},
      limits: [{ period: { kind: "calendar", unit: "day" }, amount: 10_000_000n }],
    };
    return await new SqliteBudgetStore(db).used(b, b.limits[0] as Budget["limits"][0], Date.now());
  } finally {
    db.close();
  }
}

/** Polls the ledger (bounded) until `pred` holds. */
async function until(pred: (rows: PaymentSummary[]) => boolean, what: string): Promise<PaymentSummary[]> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const rows = latest();
    if (pred(rows)) return rows;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const store = (p: ProxyProcess, key: string) =>
  viaProxy(p.url, "POST", `${BASE}/v1/store`, { "x-stoka-key": key }, BODY, 40_000);

describe("kill -9", () => {
  it("between reservation and signing: released on restart, nothing counted", async () => {
    // A sign command that blocks: the payment is reserved, never signed.
    const blocking = writeProxyConfig(sb, {
      budgets: BUDGETS,
      wallet: {
        rpc_url: sb.rpc.url,
        ledger_close_seconds: 5,
        payment_command: "sleep 20",
        payment_command_timeout_ms: 60_000,
        address: sb.wallet.publicKey(),
      },
    });
    dataDir = blocking.dataDir;
    proc = await startProxyProcess(sb, blocking.configPath, dataDir, { env: { STELLAR_SECRET: "" } });
    const inflight = store(proc, "killed-before-signing").catch(() => null);
    const rows = await until((r) => r.some((x) => x.state === "reserved"), "the reservation");
    const id = rows.find((x) => x.state === "reserved")?.paymentId;
    expect(await budgetUsed()).toBe(1400n);
    await proc.stop("SIGKILL");
    await inflight;

    const normal = writeProxyConfig(sb, { budgets: BUDGETS }, dataDir);
    proc = await startProxyProcess(sb, normal.configPath, dataDir);
    const after = latest().find((r) => r.paymentId === id);
    expect(after?.state).toBe("failed");
    expect(after?.reason).toMatch(
      /before the payment header was handed to the socket .*nothing was sent, released/,
    );
    expect(await budgetUsed()).toBe(0n);
    expect(proc.output()).toMatch(/were released/);
    expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(0n);
  });

  it("after the header was sent: indeterminate on restart, still counted", async () => {
    if (!proc) throw new Error("no proxy");
    const charged = sb.emulator.state.charges.length;
    // Charged, then the answer is held back: the kill lands while the paid request is in flight.
    sb.emulator.addFault({ kind: "slow", delayMs: 15_000 });
    const inflight = store(proc, "killed-after-sending").catch(() => null);
    const rows = await until((r) => r.some((x) => x.state === "sent"), "the sent row");
    const id = rows.find((x) => x.state === "sent")?.paymentId;
    const deadline = Date.now() + 10_000;
    while (sb.emulator.state.charges.length === charged && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25));
    await proc.stop("SIGKILL");
    await inflight;

    proc = await startProxyProcess(sb, proc.configPath, dataDir);
    const after = latest().find((r) => r.paymentId === id);
    expect(after?.state).toBe("indeterminate");
    expect(after?.reason).toMatch(/handed to the socket/);
    expect(await budgetUsed()).toBe(1400n);
    expect(sb.emulator.state.charges.length - charged).toBe(1);
  });

  it("SIGUSR2 toggles the kill switch of the running process", async () => {
    if (!proc) throw new Error("no proxy");
    sb.emulator.switches.faults = [];
    proc.child.kill("SIGUSR2");
    const deadline = Date.now() + 10_000;
    while (!/payment switch flipped/.test(proc.output()) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25));
    const stopped = await store(proc, "signal-stopped");
    expect(stopped.status).toBe(402);
    expect(stopped.headers["x-stoka-proxy-error"]).toBe("payments_stopped");
    expect(JSON.parse(stopped.body).proxy.reason).toMatch(/signal:SIGUSR2/);
    const flips = (proc.output().match(/payment switch flipped/g) ?? []).length;
    proc.child.kill("SIGUSR2");
    while ((proc.output().match(/payment switch flipped/g) ?? []).length === flips && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25));
    expect((await store(proc, "signal-resumed")).status).toBe(201);
  });
});
