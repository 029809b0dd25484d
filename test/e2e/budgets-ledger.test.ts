import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { ProxyAgent, request } from "undici";
import type { Budget } from "../../src/config/config.js";
import { SqliteBudgetStore } from "../../src/budget/sqlite-store.js";
import { parseCsvLine } from "../../src/ledger/entry.js";
import { Ledger } from "../../src/ledger/ledger.js";
import { reconcile } from "../../src/payment/reconciler.js";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { databasePath } from "../../src/payment/stores.js";
import { installSdkHttpGuard, trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";
import { curl } from "../support/clients.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { reconcileDeps, startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { directClient } from "../support/sandbox-fixture.js";
import { privateRedis } from "../support/redis-server.js";

/** Budgets exact under concurrency, durable across kill -9, common to replicas through Redis; the ledger. */
const ROOT = new URL("../..", import.meta.url).pathname;
const BASE = "http://test.api.stoka.space";
const PRICE = 1400n;
const BODY = Buffer.from("k".repeat(42));
const RUN = `stoka-e2e-${process.pid}-${Date.now()}`;
const run = promisify(execFile);

afterAll(async () => {
  const redis = new Redis("redis://127.0.0.1:6379");
  const keys = await redis.keys(`${RUN}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

function dayBudget(name: string, amount: bigint, extra: Partial<Budget> = {}): Budget {
  return { name, match: {}, limits: [{ period: { kind: "calendar", unit: "day" }, amount }], ...extra };
}

/** Fires `n` stores through the proxy at once; returns the status of each. */
async function hammer(
  proxyUrls: string[],
  n: number,
  prefix: string,
): Promise<{ status: number; error?: string }[]> {
  const agents = proxyUrls.map((uri) => new ProxyAgent({ uri, connections: 256 }));
  try {
    return await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const res = await request(`${BASE}/v1/store`, {
          method: "POST",
          headers: { "x-stoka-key": `${prefix}-${i}` },
          body: BODY,
          dispatcher: agents[i % agents.length],
        });
        await res.body.dump();
        const err = res.headers["x-stoka-proxy-error"];
        return { status: res.statusCode, ...(typeof err === "string" ? { error: err } : {}) };
      }),
    );
  } finally {
    await Promise.all(agents.map((a) => a.close()));
  }
}

describe.each([
  ["sqlite", undefined],
  ["redis", "redis"],
] as const)("200 parallel paid requests, budget fits exactly K (%s)", (_name, kind) => {
  it("pays exactly K, refuses the rest, spent = K × price", async () => {
    const K = 23n;
    const world = await startProxyWorld((c) => {
      c.budgets = [dayBudget("exact", K * PRICE)];
      if (kind === "redis")
        c.budgetStore = { kind: "redis", url: "redis://127.0.0.1:6379", prefix: `${RUN}-one` };
    });
    try {
      const results = await hammer([world.proxyUrl], 200, `par-${kind ?? "sqlite"}`);
      expect(results.filter((r) => r.status === 201)).toHaveLength(Number(K));
      expect(results.filter((r) => r.status === 402 && r.error === "budget_exceeded")).toHaveLength(
        200 - Number(K),
      );
      expect(world.charged()).toBe(K * PRICE);
      expect(world.signCalls()).toBe(Number(K));
      const settled = world.proxy.stores.ledger.inState("settled");
      expect(settled).toHaveLength(Number(K));
      expect(settled.reduce((s, r) => s + r.amount, 0n)).toBe(K * PRICE);
    } finally {
      await world.close();
    }
  }, 120_000);
});

describe("three proxy processes sharing one Redis", () => {
  let sb: Sandbox;
  const procs: ProxyProcess[] = [];
  beforeAll(async () => {
    sb = await startSandbox();
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await sb.close();
  });

  it("hammered in parallel, still exactly K paid", async () => {
    const K = 31n;
    for (let i = 0; i < 3; i++) {
      const { configPath, dataDir } = writeProxyConfig(sb, {
        budget_store: { kind: "redis", redis_url: "redis://127.0.0.1:6379", redis_prefix: `${RUN}-three` },
        budgets: [{ name: "shared", limits: { day: (K * PRICE).toString() } }],
      });
      procs.push(await startProxyProcess(sb, configPath, dataDir));
    }
    const results = await hammer(
      procs.map((p) => p.url),
      200,
      "three",
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(Number(K));
    // Every other one refused, nothing paid for it: over the budget, or (a Redis command timing
    // out on a loaded machine) refused because the budget could not be checked: fail closed.
    const refused = results.filter((r) => r.status !== 201);
    expect(refused.every((r) => r.status === 402)).toBe(true);
    expect(refused.filter((r) => r.error !== "budget_exceeded" && r.error !== "budget_unavailable")).toEqual(
      [],
    );
    expect(refused.filter((r) => r.error === "budget_exceeded").length).toBeGreaterThan(150);
    expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(K * PRICE);
    // Each replica's own ledger, added up, is what the emulator charged.
    let settled = 0n;
    for (const p of procs) {
      const db = openDatabase(join(p.dataDir, "stoka-proxy.db"));
      settled += new Ledger(db).inState("settled").reduce((s, r) => s + r.amount, 0n);
      db.close();
    }
    expect(settled).toBe(K * PRICE);
  }, 180_000);
});

describe("kill -9 in the middle of a paid load", () => {
  it("after a restart the ledger accounts for every charge, once; budgets resume", async () => {
    const sb = await startSandbox();
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budgets: [{ name: "big", limits: { day: "1 USDC" } }],
    });
    let proc = await startProxyProcess(sb, configPath, dataDir);
    try {
      const agent = new ProxyAgent({ uri: proc.url, connections: 16 });
      let done = 0;
      const load = Promise.allSettled(
        Array.from({ length: 80 }, async (_, i) => {
          const res = await request(`${BASE}/v1/store`, {
            method: "POST",
            headers: { "x-stoka-key": `k9-${i}` },
            body: BODY,
            dispatcher: agent,
          });
          await res.body.dump();
          done += 1;
        }),
      );
      const deadline = Date.now() + 30_000;
      while (done < 15 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await proc.stop("SIGKILL");
      await load;
      await agent.close();
      const chargedAtKill = sb.emulator.chargedTotal(sb.wallet.publicKey());
      expect(chargedAtKill).toBeGreaterThan(0n);

      proc = await startProxyProcess(sb, configPath, dataDir);
      const db = openDatabase(databasePath({ dataDir } as never));
      const ledger = new Ledger(db);
      expect(ledger.verify().ok).toBe(true);
      const latest = ledger.latest();
      // Nothing is left open after the restart.
      expect(latest.filter((r) => r.state === "reserved" || r.state === "sent")).toEqual([]);
      // Every charge the emulator made is in the ledger, under exactly one payment.
      const txToPayment = new Map<string, Set<string>>();
      for (const row of ledger.rows()) {
        if (row.tx) txToPayment.set(row.tx, (txToPayment.get(row.tx) ?? new Set()).add(row.paymentId));
      }
      for (const charge of sb.emulator.state.charges) {
        expect(txToPayment.get(charge.tx)?.size, `charge ${charge.tx}`).toBe(1);
      }
      const settled = latest.filter((r) => r.state === "settled").reduce((s, r) => s + r.amount, 0n);
      const open = latest.filter((r) => r.state === "indeterminate").reduce((s, r) => s + r.amount, 0n);
      expect(settled).toBeLessThanOrEqual(chargedAtKill);
      expect(chargedAtKill).toBeLessThanOrEqual(settled + open);
      // Budgets resume where they were: settled and indeterminate stay counted.
      const budgets = new SqliteBudgetStore(db);
      const b = dayBudget("big", 10_000_000n);
      expect(await budgets.used(b, b.limits[0] as Budget["limits"][0], Date.now())).toBe(settled + open);
      db.close();

      // And the restarted proxy pays on.
      const again = await curl({
        proxy: proc.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "after-restart" },
        body: BODY,
      });
      expect(again.status).toBe(201);
    } finally {
      await proc.stop();
      await sb.close();
    }
  }, 120_000);
});

describe("calendar roll-over through the proxy (injected clock)", () => {
  it("a day budget resets at 00:00 UTC, a month budget does not", async () => {
    let clock = Date.parse("2026-11-30T23:59:58Z");
    const world = await startProxyWorld(
      (c) => {
        c.budgets = [
          dayBudget("daily", PRICE),
          {
            name: "monthly",
            match: {},
            limits: [{ period: { kind: "calendar", unit: "month" }, amount: 2n * PRICE }],
          },
        ];
      },
      { now: () => clock },
    );
    try {
      const store = (key: string) =>
        curl({
          proxy: world.proxyUrl,
          method: "POST",
          url: `${BASE}/v1/store`,
          headers: { "X-Stoka-Key": key },
          body: BODY,
        });
      expect((await store("d1")).status).toBe(201);
      const refused = await store("d2");
      expect(refused.headers["x-stoka-proxy-error"]).toBe("budget_exceeded");
      expect(JSON.parse(refused.body.toString()).proxy.budget).toMatchObject({
        name: "daily",
        period: "day",
      });
      clock = Date.parse("2026-12-01T00:00:00Z"); // new day and new month
      expect((await store("d3")).status).toBe(201);
      clock = Date.parse("2026-12-02T00:00:01Z"); // new day, same month
      expect((await store("d4")).status).toBe(201);
      clock = Date.parse("2026-12-03T00:00:01Z"); // the day resets again, the month does not: full
      const monthFull = await store("d5");
      expect(JSON.parse(monthFull.body.toString()).proxy.budget).toMatchObject({
        name: "monthly",
        period: "month",
      });
    } finally {
      await world.close();
    }
  });
});

describe("Redis stopped mid-run", () => {
  // A Redis that keeps its data (append-only file) comes back with the same epoch: payments
  // resume with no manual step. One that comes back empty: test/e2e/redis-state-loss.test.ts.
  it("refuses to pay with a clear reason, signs nothing, does not crash, and resumes", async () => {
    const redis = await privateRedis({ persist: true });
    await redis.start();
    const world = await startProxyWorld((c) => {
      c.budgetStore = { kind: "redis", url: redis.url, prefix: `${RUN}-stop` };
    });
    const store = (key: string) =>
      curl({
        proxy: world.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": key },
        body: BODY,
      });
    try {
      const deadline = Date.now() + 10_000;
      let first = await store("r1");
      while (first.status !== 201 && Date.now() < deadline) first = await store("r1");
      expect(first.status).toBe(201);

      await redis.stop();
      const signs = world.signCalls();
      const down = await store("r2");
      expect(down.status).toBe(402);
      expect(down.headers["x-stoka-proxy-error"]).toBe("budget_unavailable");
      expect(JSON.parse(down.body.toString()).proxy.reason).toMatch(/budgets cannot be checked/);
      expect(world.signCalls()).toBe(signs);

      await redis.start();
      let back = await store("r3");
      const until = Date.now() + 10_000;
      while (back.status !== 201 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 200));
        back = await store("r3");
      }
      expect(back.status).toBe(201);
    } finally {
      await world.close();
      await redis.stop();
    }
  }, 60_000);
});

describe("the ledger: tamper-evident, exportable, reconciled", () => {
  let world: ProxyWorld;
  beforeAll(async () => {
    world = await startProxyWorld();
    installSdkHttpGuard({ ledgerCloseSeconds: 5, timeoutMs: 10_000 });
    trustExtraCertificates([world.sandbox.ca.certPem]);
    for (const key of ["l1", "l2", "l3"]) {
      await curl({
        proxy: world.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": key },
        body: BODY,
      });
    }
  });
  afterAll(async () => {
    await world.close();
  });

  const cli = (...args: string[]) =>
    run(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", STOKA_PROXY_DATA_DIR: world.config.dataDir },
    }).catch((e: { code: number; stdout: string; stderr: string }) => ({
      stdout: e.stdout,
      stderr: e.stderr,
      code: e.code,
    }));

  it("verify passes, then detects an edited row, a removed row and a removed tail", async () => {
    expect((await cli("ledger", "verify")).stdout).toMatch(/ledger OK: 9 rows/);
    const db = openDatabase(databasePath(world.config));
    const original = db.prepare("SELECT amount FROM ledger WHERE seq = 2").get() as { amount: number };
    db.prepare("UPDATE ledger SET amount = 1 WHERE seq = 2").run();
    const edited = (await cli("ledger", "verify")) as { stdout: string; code?: number };
    expect(edited.code).toBe(3);
    expect(edited.stdout).toMatch(/row 2 was edited/);
    db.prepare("UPDATE ledger SET amount = ? WHERE seq = 2").run(original.amount);
    expect((await cli("ledger", "verify")).stdout).toMatch(/ledger OK/);

    const snapshot = db.prepare("SELECT * FROM ledger ORDER BY seq").all() as Record<string, unknown>[];
    db.prepare("DELETE FROM ledger WHERE seq = 4").run();
    expect(((await cli("ledger", "verify")) as { stdout: string }).stdout).toMatch(/row 4 is missing/);
    const insert = db.prepare(
      `INSERT INTO ledger (${Object.keys(snapshot[3] ?? {}).join(", ")}) VALUES (${Object.keys(
        snapshot[3] ?? {},
      )
        .map(() => "?")
        .join(", ")})`,
    );
    insert.run(...Object.values(snapshot[3] ?? {}));
    const last = snapshot.length;
    db.prepare("DELETE FROM ledger WHERE seq = ?").run(last);
    expect(((await cli("ledger", "verify")) as { stdout: string }).stdout).toMatch(/rows were removed/);
    insert.run(...Object.values(snapshot[last - 1] ?? {}));
    expect((await cli("ledger", "verify")).stdout).toMatch(/ledger OK/);
    db.close();
  }, 120_000); // six CLI processes: slow on a loaded machine

  it("export round-trips as NDJSON and CSV", async () => {
    const rows = [...world.proxy.stores.ledger.rows()];
    const nd = (await cli("ledger", "export", "--format", "ndjson")).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(nd.map((r) => [r.seq, r.id, r.state, r.amount, r.hash])).toEqual(
      rows.map((r) => [r.seq, r.paymentId, r.state, r.amount.toString(), r.hash]),
    );
    const csv = (await cli("ledger", "export", "--format", "csv")).stdout.trim().split("\n");
    const header = parseCsvLine(csv[0] ?? "");
    const parsed = csv
      .slice(1)
      .map((line) => Object.fromEntries(parseCsvLine(line).map((v, i) => [header[i], v])));
    expect(parsed.map((r) => [Number(r.seq), r.id, r.amount, r.hash])).toEqual(
      rows.map((r) => [r.seq, r.paymentId, r.amount.toString(), r.hash]),
    );
    const future = (
      await cli("ledger", "export", "--format", "ndjson", "--since", "2099-01-01")
    ).stdout.trim();
    expect(future).toBe("");
  });

  it("spend shows budgets and routes for the current periods", async () => {
    const out = JSON.parse((await cli("spend", "--json")).stdout) as {
      routes: { route: string; today: string }[];
    };
    expect(out.routes).toEqual([expect.objectContaining({ route: "store", today: (3n * PRICE).toString() })]);
  });

  it("reconcile: matches, then finds an injected difference", async () => {
    const deps = reconcileDeps(world);
    const before = await reconcile(deps, 1, false);
    expect(before[0]).toMatchObject({ status: "match", difference: 0n, upstream: 3n * PRICE });
    // Someone spends with the same wallet behind the proxy's back.
    await directClient(world.sandbox, world.sandbox.wallet).paid("POST", "/v1/store", {
      headers: { "x-stoka-key": "sneaky" },
      body: BODY,
    });
    const after = await reconcile(deps, 1, false);
    expect(after[0]).toMatchObject({ status: "mismatch", difference: PRICE });
  });
});

describe("reconcile resolves indeterminate payments stoka decides", () => {
  it.each([
    ["charged (5xx after settling) → settled, stays spent", "error_after_settle", "settled", PRICE],
    ["not charged (5xx before settling) → rejected, released", "error_before_settle", "rejected", 0n],
  ] as const)("%s", async (_name, fault, state, used) => {
    const world = await startProxyWorld();
    try {
      world.sandbox.emulator.addFault({ kind: fault });
      const res = await curl({
        proxy: world.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "x" },
        body: BODY,
      });
      expect(res.status).toBe(502);
      const id = JSON.parse(res.body.toString()).payment_id as string;
      const deps = reconcileDeps(world);
      const report = await reconcile(deps, 1, true);
      expect(report[0]?.status).toBe(
        state === "settled" ? "all_indeterminate_charged" : "no_indeterminate_charged",
      );
      expect(world.proxy.stores.ledger.latest().find((r) => r.paymentId === id)?.state).toBe(state);
      const b = world.config.budgets[0] as Budget;
      expect(await world.proxy.stores.budgets.used(b, b.limits[0] as Budget["limits"][0], Date.now())).toBe(
        used,
      );
      expect((await reconcile(deps, 1, false))[0]?.status).toBe("match");
    } finally {
      await world.close();
    }
  });
});
