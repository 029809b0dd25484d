import { execFile, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Keypair } from "@stellar/stellar-sdk";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleCli } from "../../bench/crash/bundle.js";
import { loadConfig } from "../../src/config/load.js";
import type { LedgerRow } from "../../src/ledger/entry.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { PostgresPaymentStore } from "../../src/store/postgres-payment-store.js";
import { SqliteEventStore } from "../../src/operator/security/sqlite-event-store.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { SqlitePaymentStore } from "../../src/store/sqlite-payment-store.js";
import { createTestDatabase } from "../support/postgres.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import { startTestSandbox } from "../support/sandbox-fixture.js";
import { tcpRelay } from "../support/tcp-relay.js";
import { requireTool } from "../support/tools.js";

/**
 * `stoka-proxy pay` as stoka's own clients run it (X_PAYMENT_CMD): a Python client that pays
 * the emulator through it, refusals that sign nothing, `--settled` / `--failed`, and a proxy
 * whose own X_PAYMENT_CMD is `stoka-proxy pay`. The command runs as a real process (the CLI
 * bundled once, as the crash test does, so each run starts in well under a second).
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const PY_CLIENT = join(ROOT, "test/clients/stoka_pay_cmd.py");
const run = promisify(execFile);

let sandbox: Sandbox;
let cli: string[];

beforeAll(async () => {
  requireTool("python3");
  sandbox = await startTestSandbox();
  cli = await bundleCli();
}, 60_000);

afterAll(async () => {
  await sandbox?.close();
});

interface PayWorld {
  configPath: string;
  dataDir: string;
  wallet: Keypair;
  /** The command line a client puts in X_PAYMENT_CMD. */
  command: (args?: string) => string;
}

/** A pay-command config: its own wallet (a seed file), data folder and budgets. */
function payWorld(extra: Record<string, unknown> = {}): PayWorld {
  const wallet = sandbox.newWallet();
  const dir = mkdtempSync(join(tmpdir(), "stoka-pay-"));
  const secretFile = join(dir, "seed");
  writeFileSync(secretFile, wallet.secret(), { mode: 0o600 });
  const ca = join(dir, "ca.pem");
  writeFileSync(ca, sandbox.ca.certPem);
  const { configPath, dataDir } = writeProxyConfig(sandbox, {
    wallet: {
      rpc_url: sandbox.rpc.url,
      rpc_ca_files: [ca],
      ledger_close_seconds: 5,
      secret_file: secretFile,
    },
    budgets: [{ name: "agents", per_request_max: "0.01 USDC", limits: { day: "1 USDC" } }],
    ...extra,
  });
  const command = (args = "") =>
    `${process.execPath} ${cli.join(" ")} pay --config ${configPath}${args ? ` ${args}` : ""}`;
  return { configPath, dataDir, wallet, command };
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runPay(w: PayWorld, args: string[], stdin: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...cli, "pay", "--config", w.configPath, ...args], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}

async function rows(w: PayWorld): Promise<LedgerRow[]> {
  const store = SqlitePaymentStore.open(join(w.dataDir, "stoka-proxy.db"));
  try {
    const out: LedgerRow[] = [];
    for await (const r of store.rows()) out.push(r);
    return out;
  } finally {
    await store.close();
  }
}

/** What the day's limit of the config's first budget counts now (spent + reserved). */
async function budgetUsed(w: PayWorld): Promise<bigint> {
  const config = loadConfig({}, { config: w.configPath });
  const budget = config.budgets[0];
  const limit = budget?.limits[0];
  if (!budget || !limit) throw new Error("no budget");
  const store = SqlitePaymentStore.open(join(w.dataDir, "stoka-proxy.db"));
  try {
    return await store.used(budget, limit, Date.now());
  } finally {
    await store.close();
  }
}

interface ClientRun {
  first: number;
  cmd_exit?: number;
  cmd_stderr?: string;
  cmd_stdout_lines?: number;
  status?: number;
  receipt?: string | null;
}

async function pythonClient(w: PayWorld, key: string, args: string[] = [], cmdArgs = ""): Promise<ClientRun> {
  const { stdout } = await run("python3", [PY_CLIENT, sandbox.emulator.httpUrl, key, ...args], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      X_PAYMENT_CMD: w.command(cmdArgs),
    },
    timeout: 90_000,
  });
  return JSON.parse(stdout) as ClientRun;
}

/** The emulator's own 402 for a store, as the client saw it. */
async function storeChallenge(key: string): Promise<Record<string, unknown>> {
  const res = await request(`${sandbox.emulator.httpUrl}/v1/store`, {
    method: "POST",
    headers: { "x-stoka-key": key },
    body: "x".repeat(42),
  });
  expect(res.statusCode).toBe(402);
  return (await res.body.json()) as Record<string, unknown>;
}

describe("stoka-proxy pay as a stoka client's X_PAYMENT_CMD", () => {
  it.each([
    ["the 402's JSON", []],
    ["one requirement alone", ["--single"]],
  ])(
    "a Python client paying with %s: charged once, one ledger row set under its client and route, counted",
    async (_name, args) => {
      const w = payWorld();
      const r = await pythonClient(w, `py-${args.length}`, args, "--client py-agent");
      expect(r.first).toBe(402);
      expect(r.cmd_exit, r.cmd_stderr).toBe(0);
      expect(r.cmd_stdout_lines).toBe(1);
      expect(r.status).toBe(201);
      // stderr: one line, naming the payment, never the seed.
      expect(r.cmd_stderr?.trim().split("\n")).toHaveLength(1);
      expect(r.cmd_stderr).not.toContain(w.wallet.secret());
      const charged = sandbox.emulator.chargedTotal(w.wallet.publicKey());
      expect(charged).toBeGreaterThan(0n);
      const ledger = await rows(w);
      expect(ledger.map((x) => x.state)).toEqual(["reserved", "sent"]);
      const sent = ledger[1] as LedgerRow;
      expect(sent).toMatchObject({ client: "py-agent", route: "store", method: "POST", amount: charged });
      expect(r.cmd_stderr).toContain(sent.paymentId);
      expect(sent.tx).toMatch(/^[0-9a-f]{64}$/);
      expect(await budgetUsed(w)).toBe(charged);
    },
    60_000,
  );

  it("the x402 v2 header form: PAYMENT-REQUIRED in, PAYMENT-SIGNATURE out, resource.url checked", async () => {
    sandbox.emulator.switches.challengeForm = "x402v2";
    try {
      const w = payWorld();
      const r = await pythonClient(w, "py-v2");
      expect(r.cmd_exit, r.cmd_stderr).toBe(0);
      expect(r.status).toBe(201);
      expect(sandbox.emulator.chargedTotal(w.wallet.publicKey())).toBeGreaterThan(0n);
    } finally {
      sandbox.emulator.switches.challengeForm = "stoka";
    }
  }, 60_000);
});

describe("refusals: a non-zero exit, one line on stderr, nothing signed", () => {
  it("over budget: exit 6, budget_exceeded, nothing reserved or charged; --json says it as JSON", async () => {
    const w = payWorld({ budgets: [{ name: "tiny", limits: { day: 100 } }] });
    const challenge = JSON.stringify(await storeChallenge("over"));
    const text = await runPay(w, [], challenge);
    expect(text.code).toBe(6);
    expect(text.stdout).toBe("");
    expect(text.stderr.trim().split("\n")).toHaveLength(1);
    expect(text.stderr).toMatch(/refused \(budget_exceeded\): budget tiny \(day\) allows/);
    const json = await runPay(w, ["--json"], challenge);
    expect(json.code).toBe(6);
    expect(json.stdout).toBe("");
    expect(JSON.parse(json.stderr)).toMatchObject({
      refused: true,
      code: "budget_exceeded",
      budget: { name: "tiny" },
    });
    expect(await rows(w)).toEqual([]);
    expect(sandbox.emulator.chargedTotal(w.wallet.publicKey())).toBe(0n);
  }, 60_000);

  it("the second payment past the day's limit is refused; the first stays counted", async () => {
    const challenge = await storeChallenge("twice");
    const price = BigInt(
      ((challenge.accepts as Record<string, string>[])[0] as Record<string, string>).amount ?? "0",
    );
    const w = payWorld({ budgets: [{ name: "one", limits: { day: Number(price) } }] });
    const first = await runPay(w, ["--json"], JSON.stringify(challenge));
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stderr)).toMatchObject({ paid: true, amount: price.toString(), route: "store" });
    const second = await runPay(w, ["--json"], JSON.stringify(challenge));
    expect(second.code).toBe(6);
    expect(JSON.parse(second.stderr)).toMatchObject({ code: "budget_exceeded" });
    expect(await budgetUsed(w)).toBe(price);
  }, 60_000);

  it.each([
    [
      "an untrusted payee",
      (c: Record<string, unknown>) => reqEdit(c, { payTo: sandbox.newWallet().publicKey() }),
      /payTo/,
    ],
    ["an untrusted asset", (c: Record<string, unknown>) => reqEdit(c, { asset: "CBADASSET" }), /asset/],
    [
      "a resource on a host that is not a paid host",
      (c: Record<string, unknown>) => reqEdit(c, { resource: "https://evil.example/v1/store" }),
      /evil\.example.*neither a paid host/,
    ],
  ])(
    "%s: exit 5, terms refused, nothing in the ledger",
    async (_name, edit, reason) => {
      const w = payWorld();
      const r = await runPay(w, ["--json"], JSON.stringify(edit(await storeChallenge("terms"))));
      expect(r.code, r.stderr).toBe(5);
      expect(r.stdout).toBe("");
      const said = JSON.parse(r.stderr) as { code: string; reason: string };
      expect(said.code).toBe("terms_rejected");
      expect(said.reason).toMatch(reason);
      expect(await rows(w)).toEqual([]);
      // Stored as the proxy stores it: `stoka-proxy events` shows it.
      const db = openDatabase(join(w.dataDir, "stoka-proxy.db"));
      try {
        const events = await new SqliteEventStore(db).list();
        expect(events.map((e) => [e.code, e.client])).toEqual([["terms_rejected", "pay-command"]]);
        expect(events[0]?.detail).toMatch(reason);
      } finally {
        db.close();
      }
    },
    60_000,
  );

  it("the x402 v2 form naming another host's resource: refused", async () => {
    const w = payWorld();
    const c = await storeChallenge("v2-elsewhere");
    const v2 = { x402Version: 2, resource: { url: "https://evil.example/v1/store" }, accepts: c.accepts };
    const r = await runPay(w, [], JSON.stringify(v2));
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/terms_rejected/);
    expect(await rows(w)).toEqual([]);
  }, 60_000);

  it("--url naming a paid host makes an unknown resource host payable, on that host's terms", async () => {
    const w = payWorld();
    const c = reqEdit(await storeChallenge("by-url"), { resource: "https://elsewhere.example/v1/store" });
    const refused = await runPay(w, [], JSON.stringify(c));
    expect(refused.code).toBe(5);
    const paid = await runPay(w, ["--url", "http://test.api.stoka.space/v1/store"], JSON.stringify(c));
    expect(paid.code, paid.stderr).toBe(0);
    expect(paid.stdout.trim()).toMatch(/^[A-Za-z0-9+/]+=*$/);
    const ledger = await rows(w);
    expect(ledger.map((x) => x.state)).toEqual(["reserved", "sent"]);
    expect(ledger[0]?.url).toBe(`${sandbox.emulator.httpUrl}/v1/store`);
  }, 60_000);

  it("unreadable stdin: exit 5 (challenge_unreadable); no wallet: exit 78 (no_signer)", async () => {
    const w = payWorld();
    const bad = await runPay(w, [], "not json");
    expect(bad.code).toBe(5);
    expect(bad.stderr).toMatch(/challenge_unreadable/);
    const noKey = payWorld({ wallet: { rpc_url: sandbox.rpc.url } });
    const r = await runPay(noKey, [], JSON.stringify(await storeChallenge("no-key")));
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/no_signer/);
  }, 60_000);
});

describe("budgets by client and route, the switch, usage", () => {
  it("--client picks the budgets that match it: another client has none (exit 6, no_budget)", async () => {
    const w = payWorld({
      budgets: [
        { name: "agent-a", match: { clients: ["agent-a"], routes: ["store"] }, limits: { day: "1 USDC" } },
      ],
    });
    const challenge = JSON.stringify(await storeChallenge("by-client"));
    const other = await runPay(w, ["--client", "agent-b", "--json"], challenge);
    expect(other.code).toBe(6);
    expect(JSON.parse(other.stderr)).toMatchObject({ code: "no_budget" });
    const mine = await runPay(w, ["--client", "agent-a"], challenge);
    expect(mine.code, mine.stderr).toBe(0);
    expect((await rows(w)).map((r) => `${r.state}:${r.client}:${r.route}`)).toEqual([
      "reserved:agent-a:store",
      "sent:agent-a:store",
    ]);
  }, 60_000);

  it.each([
    ["stopped", { stopped: true }, "payments_stopped"],
    ["dry run", { dry_run: true }, "dry_run"],
  ])(
    "payments %s in the configuration: exit 7, nothing reserved",
    async (_name, payments, code) => {
      const w = payWorld({ payments });
      const r = await runPay(w, ["--json"], JSON.stringify(await storeChallenge("switch")));
      expect(r.code).toBe(7);
      expect(JSON.parse(r.stderr)).toMatchObject({ refused: true, code });
      expect(await rows(w)).toEqual([]);
    },
    60_000,
  );

  it("a budget that wants a person's approval: refused (exit 7), the reservation released, nothing signed", async () => {
    const challenge = await storeChallenge("approval");
    const price = Number((challenge.accepts as { amount: string }[])[0]?.amount);
    const w = payWorld({
      budgets: [{ name: "careful", limits: { day: "1 USDC" }, approval: { above: price - 1 } }],
    });
    const r = await runPay(w, ["--json"], JSON.stringify(challenge));
    expect(r.code).toBe(7);
    expect(r.stdout).toBe("");
    expect(JSON.parse(r.stderr)).toMatchObject({ code: "approval_denied", budgets: ["careful"] });
    expect((await rows(w)).map((x) => x.state)).toEqual(["reserved", "failed"]);
    expect(await budgetUsed(w)).toBe(0n);
    expect(sandbox.emulator.chargedTotal(w.wallet.publicKey())).toBe(0n);
    // At the mark (not above it) no person is needed.
    const at = payWorld({
      budgets: [{ name: "careful", limits: { day: "1 USDC" }, approval: { above: price } }],
    });
    expect((await runPay(at, [], JSON.stringify(challenge))).code).toBe(0);
  }, 60_000);

  it.each([
    ["--settled and --failed together", ["--settled", "ab".repeat(32), "--failed"], /exactly one/],
    ["--settled with no hash", ["--settled", "xyz"], /64 hex/],
    ["an unknown flag", ["--pay-anyway"], /unknown option/],
  ])(
    "%s: exit 2",
    async (_name, args, reason) => {
      const r = await runPay(payWorld(), args, "");
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(reason);
    },
    60_000,
  );

  it("a configuration it refuses: exit 78, and with --json a JSON reason", async () => {
    const w = payWorld({ budgets: [{ name: "broken", limits: { day: "lots" } }] });
    const r = await runPay(w, ["--json"], "{}");
    expect(r.code).toBe(78);
    expect(JSON.parse(r.stderr)).toMatchObject({ refused: true, code: "config_invalid" });
  }, 60_000);
});

/** The challenge with its first requirement's fields replaced. */
function reqEdit(c: Record<string, unknown>, fields: Record<string, unknown>): Record<string, unknown> {
  const [first, ...rest] = c.accepts as Record<string, unknown>[];
  return { ...c, accepts: [{ ...first, ...fields }, ...rest] };
}

describe("--settled / --failed finish an open payment", () => {
  it("--settled TX commits it; a second --settled finds nothing open", async () => {
    const w = payWorld();
    const paid = await runPay(w, ["--json"], JSON.stringify(await storeChallenge("settle")));
    expect(paid.code, paid.stderr).toBe(0);
    const { payment_id: id, amount } = JSON.parse(paid.stderr) as { payment_id: string; amount: string };
    const tx = "ab".repeat(32);
    const done = await runPay(w, ["--settled", tx, "--json"], "");
    expect(done.code, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ payment_id: id, state: "settled", from: "sent", tx });
    expect((await rows(w)).map((r) => r.state)).toEqual(["reserved", "sent", "settled"]);
    expect(await budgetUsed(w)).toBe(BigInt(amount));
    const again = await runPay(w, ["--settled", tx, "--payment-id", id], "");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is settled, not open/);
  }, 60_000);

  it("--failed gives the budget back; with two open, no --payment-id is ambiguous", async () => {
    const w = payWorld();
    const ids: string[] = [];
    for (const key of ["f1", "f2"]) {
      const r = await runPay(w, ["--json"], JSON.stringify(await storeChallenge(key)));
      expect(r.code, r.stderr).toBe(0);
      ids.push((JSON.parse(r.stderr) as { payment_id: string }).payment_id);
    }
    const before = await budgetUsed(w);
    const ambiguous = await runPay(w, ["--failed"], "");
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/2 open `stoka-proxy pay` payments.*--payment-id/);
    const failed = await runPay(
      w,
      ["--failed", "--payment-id", ids[0] ?? "", "--reason", "answered 402"],
      "",
    );
    expect(failed.code, failed.stderr).toBe(0);
    expect(failed.stdout).toMatch(/sent → failed/);
    const after = await budgetUsed(w);
    expect(after).toBeLessThan(before);
    expect(after).toBeGreaterThan(0n);
    // Only one is open now: no id needed.
    const settled = await runPay(w, ["--settled", "cd".repeat(32)], "");
    expect(settled.code, settled.stderr).toBe(0);
    expect(settled.stdout).toContain(ids[1]);
  }, 60_000);

  it("a proxy restart on the same store keeps a printed payment counted (indeterminate, never released)", async () => {
    const w = payWorld();
    const paid = await runPay(w, [], JSON.stringify(await storeChallenge("restart")));
    expect(paid.code, paid.stderr).toBe(0);
    const used = await budgetUsed(w);
    const proc = await startProxyProcess(sandbox, w.configPath, w.dataDir, {
      cli,
      env: { STELLAR_SECRET: "" },
    });
    await proc.stop();
    const states = (await rows(w)).map((r) => r.state);
    expect(states).toEqual(["reserved", "sent", "indeterminate"]);
    expect(await budgetUsed(w)).toBe(used);
    // The caller's report still applies after recovery.
    const done = await runPay(w, ["--settled", "ef".repeat(32)], "");
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toMatch(/indeterminate → settled/);
    expect(await budgetUsed(w)).toBe(used);
  }, 60_000);
});

describe("a proxy starting on the same file while a header is signed", () => {
  it("releases the reservation, so the header is never printed (nothing spent, nothing counted)", async () => {
    const rpcPort = Number(new URL(sandbox.rpc.url).port);
    const relay = await tcpRelay(rpcPort);
    const dir = mkdtempSync(join(tmpdir(), "stoka-pay-slow-"));
    const ca = join(dir, "ca.pem");
    writeFileSync(ca, sandbox.ca.certPem);
    const base = payWorld();
    const seedFile = join(dir, "seed");
    writeFileSync(seedFile, base.wallet.secret(), { mode: 0o600 });
    const w = payWorld({
      wallet: {
        rpc_url: `https://127.0.0.1:${relay.port}`,
        rpc_ca_files: [ca],
        ledger_close_seconds: 5,
        secret_file: seedFile,
        signing_timeout_ms: 60_000,
      },
    });
    try {
      // The RPC's answers arrive late: signing takes seconds, with the reservation open.
      relay.lag(4000);
      const paying = runPay(w, [], JSON.stringify(await storeChallenge("slow-sign")));
      await until(async () => (await rows(w)).some((r) => r.state === "reserved"), 20_000);
      const proc = await startProxyProcess(sandbox, w.configPath, w.dataDir, {
        cli,
        env: { STELLAR_SECRET: "" },
      });
      await until(async () => (await rows(w)).some((r) => r.state === "failed"), 20_000);
      await proc.stop();
      relay.lag(0);
      const r = await paying;
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/released the reservation while it was being signed/);
      // Its latest row is final, never open: no lease or reconciliation will count it again.
      expect((await rows(w)).map((x) => x.state)).toEqual(["reserved", "failed", "sent", "failed"]);
      expect(await budgetUsed(w)).toBe(0n);
      expect(sandbox.emulator.chargedTotal(base.wallet.publicKey())).toBe(0n);
    } finally {
      relay.lag(0);
      await relay.close();
    }
  }, 90_000);
});

/** Polls `check` every 100 ms until it holds, failing after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("a proxy whose X_PAYMENT_CMD is stoka-proxy pay", () => {
  it("pays an app's request end to end: charged once, both ledgers agree", async () => {
    const payer = payWorld();
    const { configPath, dataDir } = writeProxyConfig(sandbox, {
      budgets: [{ name: "app", limits: { day: "1 USDC" } }],
      wallet: {
        rpc_url: sandbox.rpc.url,
        address: payer.wallet.publicKey(),
        payment_command: payer.command("--client via-proxy"),
        payment_command_timeout_ms: 20_000,
      },
    });
    const proc = await startProxyProcess(sandbox, configPath, dataDir, { cli, env: { STELLAR_SECRET: "" } });
    try {
      const res = await request(`${proc.url}/v1/store`, {
        method: "POST",
        headers: { "x-stoka-key": "through-proxy" },
        body: "stored through a proxy that signs with stoka-proxy pay",
      });
      const text = await res.body.text();
      expect(res.statusCode, text).toBe(201);
      const charged = sandbox.emulator.chargedTotal(payer.wallet.publicKey());
      expect(res.headers["x-stoka-proxy-paid"]).toBe(charged.toString());
      // The pay command's own ledger: the payment it printed, under its client.
      const own = await rows(payer);
      expect(own.map((r) => r.state)).toEqual(["reserved", "sent"]);
      expect(own[1]).toMatchObject({ client: "via-proxy", route: "store", amount: charged });
    } finally {
      await proc.stop();
    }
    const proxyLedger = await rows({ ...payer, dataDir });
    expect(proxyLedger.map((r) => r.state)).toEqual(["reserved", "sent", "settled"]);
  }, 90_000);
});

describe("the shared PostgreSQL payment store", () => {
  it("pay books into the database a proxy fleet shares: one budget, one ledger", async () => {
    const db = await createTestDatabase();
    try {
      const challenge = await storeChallenge("pg");
      const price = Number((challenge.accepts as { amount: string }[])[0]?.amount);
      const w = payWorld({
        payment_store: { kind: "postgres", url: db.url },
        budgets: [{ name: "fleet", limits: { day: price } }],
      });
      const paid = await runPay(w, ["--json"], JSON.stringify(challenge));
      expect(paid.code, paid.stderr).toBe(0);
      const { payment_id: id } = JSON.parse(paid.stderr) as { payment_id: string };
      // The budget in the database counts it: the next one is refused.
      const second = await runPay(w, [], JSON.stringify(challenge));
      expect(second.code).toBe(6);
      const done = await runPay(w, ["--settled", "12".repeat(32), "--payment-id", id], "");
      expect(done.code, done.stderr).toBe(0);
      const store = new PostgresPaymentStore({ url: db.url, poolMax: 2 });
      try {
        const states: string[] = [];
        for await (const r of store.rows()) states.push(`${r.state}:${r.client}`);
        expect(states).toEqual(["reserved:pay-command", "sent:pay-command", "settled:pay-command"]);
        expect((await store.verify()).ok).toBe(true);
      } finally {
        await store.close();
      }
    } finally {
      await db.drop();
    }
  }, 60_000);
});
