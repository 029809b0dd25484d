import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { ProxyAgent, request } from "undici";
import { stringify } from "yaml";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import { privateRedis } from "../support/redis-server.js";
import type { RedisServer } from "../support/redis-server.js";

/**
 * A budget kept in Redis for several replicas survives Redis losing its data: restarted without
 * persistence, killed mid-load, flushed, evicted. The replicas refuse to pay (and say so on
 * /readyz and /metrics) until an operator restores the counters from the ledgers; the
 * emulator's own record of charges never exceeds the budget over the whole run.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const BASE = "http://test.api.stoka.space";
const PRICE = 1400n;
const BODY = Buffer.from("k".repeat(42));
const run = promisify(execFile);

type Result = { status: number; error?: string; reason?: string };

async function hammer(urls: string[], n: number, prefix: string, connections = 64): Promise<Result[]> {
  const agents = urls.map((uri) => new ProxyAgent({ uri, connections }));
  try {
    return await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const res = await request(`${BASE}/v1/store`, {
          method: "POST",
          headers: { "x-stoka-key": `${prefix}-${i}` },
          body: BODY,
          dispatcher: agents[i % agents.length],
        });
        const text = await res.body.text();
        const err = res.headers["x-stoka-proxy-error"];
        let reason: string | undefined;
        try {
          reason = (JSON.parse(text) as { proxy?: { reason?: string } }).proxy?.reason;
        } catch {
          // not JSON
        }
        return {
          status: res.statusCode,
          ...(typeof err === "string" ? { error: err } : {}),
          ...(reason ? { reason } : {}),
        };
      }),
    );
  } finally {
    await Promise.all(agents.map((a) => a.close()));
  }
}

const paid = (rs: Result[]) => rs.filter((r) => r.status === 201).length;

async function cli(
  configPath: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(
      process.execPath,
      ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args, "--config", configPath],
      { cwd: ROOT, env: { PATH: process.env.PATH ?? "" }, timeout: 60_000 },
    );
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

async function readyz(adminUrl: string): Promise<{ status: number; reasons: string[] }> {
  const res = await fetch(`${adminUrl}/readyz`);
  const body = (await res.json()) as { reasons?: string[] };
  return { status: res.status, reasons: body.reasons ?? [] };
}

async function metric(adminUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

/** Polls until `test` holds (bounded); returns whether it did. */
async function eventually(test: () => Promise<boolean>, ms = 15_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await test().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

const lostAt = async (p: ProxyProcess) =>
  (await readyz(p.adminUrl)).reasons.join(" ").includes("lost its state");

const LOST = /the budget store \(Redis\) lost its state: .*stoka-proxy budgets restore --ledger FILE/;

interface Deployment {
  sb: Sandbox;
  redis: RedisServer;
  procs: ProxyProcess[];
  configs: string[];
  charged: () => bigint;
  ledgers: () => string[];
}

let current: Deployment | undefined;
afterEach(async () => {
  const d = current;
  current = undefined;
  if (!d) return;
  await Promise.all(d.procs.map((p) => p.stop()));
  await d.redis.stop();
  await d.sb.close();
});

/** Three `stoka-proxy start` processes sharing one private Redis and a day budget of K payments. */
async function deploy(k: bigint, replicas = 3): Promise<Deployment> {
  const sb = await startSandbox();
  const redis = await privateRedis();
  await redis.start();
  const d: Deployment = {
    sb,
    redis,
    procs: [],
    configs: [],
    charged: () => sb.emulator.chargedTotal(sb.wallet.publicKey()),
    ledgers: () => d.procs.map((p) => join(p.dataDir, "stoka-proxy.db")),
  };
  current = d;
  for (let i = 0; i < replicas; i++) {
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budget_store: { kind: "redis", redis_url: redis.url, redis_prefix: "team" },
      budgets: [{ name: "shared", limits: { day: (k * PRICE).toString() } }],
    });
    d.configs.push(configPath);
    d.procs.push(await startProxyProcess(sb, configPath, dataDir));
  }
  return d;
}

async function restoreFromAll(d: Deployment, ledgers = d.ledgers()): Promise<void> {
  const args = ledgers.flatMap((f) => ["--ledger", f]);
  const restored = await cli(d.configs[0] as string, "budgets", "restore", ...args);
  expect(restored.stderr).toBe("");
  expect(restored.code).toBe(0);
  expect(restored.stdout).toMatch(new RegExp(`restored epoch .* from ${ledgers.length} ledger\\(s\\)`));
}

describe("three replicas, Redis restarted without persistence", () => {
  it("refuses to pay until restored from the ledgers; never charges more than the budget", async () => {
    const K = 12n;
    const d = await deploy(K);
    // A fresh deployment pays with no manual step.
    expect(
      paid(
        await hammer(
          d.procs.map((p) => p.url),
          5,
          "before",
        ),
      ),
    ).toBe(5);
    expect(d.charged()).toBe(5n * PRICE);

    await d.redis.stop();
    await d.redis.start(); // empty: no persistence
    for (const p of d.procs) expect(await eventually(() => lostAt(p))).toBe(true);

    const refused = await hammer(
      d.procs.map((p) => p.url),
      9,
      "lost",
    );
    expect(refused.map((r) => [r.status, r.error])).toEqual(refused.map(() => [402, "budget_unavailable"]));
    for (const r of refused) expect(r.reason).toMatch(LOST);
    expect(d.charged()).toBe(5n * PRICE);
    for (const p of d.procs) {
      const ready = await readyz(p.adminUrl);
      expect(ready.status).toBe(503);
      expect(ready.reasons.join(" ")).toMatch(LOST);
      expect(await metric(p.adminUrl, "stoka_proxy_budget_store_state_lost")).toBe(1);
      expect(await metric(p.adminUrl, "stoka_proxy_budget_store_losses_total")).toBe(1);
      // One warning when it was found, not one per refused request. Log lines reach stdout up
      // to 100 ms after they are logged (batched-stdout.ts): read after a flush has happened.
      expect(await eventually(async () => /budget store lost its state/.test(p.output()), 2_000)).toBe(true);
      await new Promise((r) => setTimeout(r, 250));
      expect(p.output().match(/budget store lost its state/g)).toHaveLength(1);
    }
    // Replicas started now (a rollout) refuse too: they remember the epoch in their database.
    await d.procs[1]?.stop();
    d.procs[1] = await startProxyProcess(d.sb, d.configs[1] as string, d.procs[1]?.dataDir as string);
    expect((await hammer([d.procs[1].url], 2, "rolled"))[0]?.error).toBe("budget_unavailable");

    await restoreFromAll(d);
    const after = await hammer(
      d.procs.map((p) => p.url),
      30,
      "after",
    );
    expect(paid(after)).toBe(Number(K) - 5);
    expect(after.filter((r) => r.error === "budget_exceeded")).toHaveLength(30 - (Number(K) - 5));
    expect(d.charged()).toBe(K * PRICE);
    for (const p of d.procs) {
      expect((await readyz(p.adminUrl)).status).toBe(200);
      expect(await metric(p.adminUrl, "stoka_proxy_budget_store_state_lost")).toBe(0);
    }
  }, 180_000);
});

describe("every replica restarted while Redis came back empty", () => {
  it("each remembers the epoch in its own database and refuses; a new replica refuses too", async () => {
    const K = 6n;
    const d = await deploy(K, 2);
    expect(
      paid(
        await hammer(
          d.procs.map((p) => p.url),
          4,
          "before",
        ),
      ),
    ).toBe(4);
    await Promise.all(d.procs.map((p) => p.stop()));
    await d.redis.stop();
    await d.redis.start(); // empty, and no replica was running to see it happen
    for (let i = 0; i < 2; i++) {
      d.procs[i] = await startProxyProcess(d.sb, d.configs[i] as string, d.procs[i]?.dataDir as string);
    }
    const refused = await hammer(
      d.procs.map((p) => p.url),
      4,
      "restarted",
    );
    expect(refused.every((r) => r.error === "budget_unavailable" && LOST.test(r.reason ?? ""))).toBe(true);
    // A replica added now (empty data directory) finds the tombstone, not a fresh deployment.
    const { configPath, dataDir } = writeProxyConfig(d.sb, {
      budget_store: { kind: "redis", redis_url: d.redis.url, redis_prefix: "team" },
      budgets: [{ name: "shared", limits: { day: (K * PRICE).toString() } }],
    });
    const added = await startProxyProcess(d.sb, configPath, dataDir);
    d.procs.push(added);
    expect((await hammer([added.url], 1, "added"))[0]?.error).toBe("budget_unavailable");
    expect(d.charged()).toBe(4n * PRICE);

    // The new replica's ledger is empty: restoring from the other two is complete.
    await restoreFromAll(d, d.ledgers().slice(0, 2));
    expect(
      paid(
        await hammer(
          d.procs.map((p) => p.url),
          9,
          "after",
        ),
      ),
    ).toBe(2);
    expect(d.charged()).toBe(K * PRICE);
  }, 180_000);
});

describe("Redis killed (-9) and restarted empty in the middle of a parallel load", () => {
  it("in-flight payments stay counted; after restore the total charged never exceeds K", async () => {
    const K = 30n;
    const d = await deploy(K);
    const urls = d.procs.map((p) => p.url);
    let done = 0;
    const load = hammer(urls, 60, "mid", 4).then((r) => {
      done = r.length;
      return r;
    });
    // Kill Redis once some payments went through and others are in flight.
    expect(await eventually(async () => d.charged() >= 6n * PRICE, 60_000)).toBe(true);
    await d.redis.stop();
    await d.redis.start();
    const first = await load;
    expect(done).toBe(60);
    expect(d.charged()).toBeLessThanOrEqual(K * PRICE);
    for (const p of d.procs) expect(await eventually(() => lostAt(p))).toBe(true);
    const chargedBeforeRestore = d.charged();
    const refused = await hammer(urls, 6, "lost");
    expect(refused.every((r) => r.error === "budget_unavailable")).toBe(true);
    expect(d.charged()).toBe(chargedBeforeRestore);

    // Some requests were in flight or refused when Redis died.
    expect(first.some((r) => r.status !== 201 && r.error !== "budget_exceeded")).toBe(true);
    await restoreFromAll(d);
    // The restored counters hold at least everything the emulator charged (indeterminate
    // payments stay counted, charged or not).
    const spend = JSON.parse((await cli(d.configs[0] as string, "spend", "--json")).stdout) as {
      budgets: { used: string }[];
    };
    const restored = BigInt(spend.budgets[0]?.used ?? "0");
    expect(restored).toBeGreaterThanOrEqual(chargedBeforeRestore);
    const after = await hammer(urls, 60, "after");
    // Exactly what the restored counters leave of the budget is paid.
    expect(BigInt(paid(after)) * PRICE).toBe(K * PRICE - restored);
    // The truth: what the emulator charged over the whole run.
    expect(d.charged()).toBeLessThanOrEqual(K * PRICE);
    expect(after.every((r) => r.status === 201 || r.error === "budget_exceeded")).toBe(true);
  }, 240_000);
});

describe("FLUSHDB and eviction while the proxy runs", () => {
  it("FLUSHDB: refused at once; restore rebuilds from the ledger; the rest of the budget is paid", async () => {
    const redis = await privateRedis();
    await redis.start();
    const K = 6n;
    const world = await startProxyWorld((c) => {
      c.budgetStore = { kind: "redis", url: redis.url, prefix: "flush" };
      c.budgets = [
        { name: "b", match: {}, limits: [{ period: { kind: "calendar", unit: "day" }, amount: K * PRICE }] },
      ];
    });
    const admin = new Redis(redis.url);
    try {
      expect(paid(await hammer([world.proxyUrl], 2, "f1"))).toBe(2);
      await admin.flushdb();
      const refused = await hammer([world.proxyUrl], 3, "f2");
      expect(refused.map((r) => r.error)).toEqual([
        "budget_unavailable",
        "budget_unavailable",
        "budget_unavailable",
      ]);
      expect(refused[0]?.reason).toMatch(LOST);
      expect(world.charged()).toBe(2n * PRICE);
      expect(world.logs().match(/budget store lost its state/g)).toHaveLength(1);
      expect(await world.proxy.readiness()).toEqual([expect.stringMatching(LOST)]);

      // The operator's command, on this replica's data directory.
      const configPath = join(mkdtempSync(join(tmpdir(), "stoka-flush-")), "config.yaml");
      writeFileSync(
        configPath,
        stringify({
          data_dir: world.config.dataDir,
          budget_store: { kind: "redis", redis_url: redis.url, redis_prefix: "flush" },
          budgets: [{ name: "b", limits: { day: (K * PRICE).toString() } }],
        }),
      );
      const restored = await cli(configPath, "budgets", "restore");
      expect(restored.code).toBe(0);
      expect(restored.stdout).toMatch(/from 1 ledger\(s\): 2 payment\(s\) counted/);
      const after = await hammer([world.proxyUrl], 8, "f3");
      expect(paid(after)).toBe(Number(K) - 2);
      expect(world.charged()).toBe(K * PRICE);
      expect(world.logs()).toMatch(/budget store restored by an operator/);
    } finally {
      admin.disconnect();
      await world.close();
      await redis.stop();
    }
  }, 120_000);

  it("maxmemory eviction of the epoch record or a counter is loss too", async () => {
    const redis = await privateRedis();
    await redis.start();
    const world = await startProxyWorld((c) => {
      c.budgetStore = { kind: "redis", url: redis.url, prefix: "evict" };
    });
    const admin = new Redis(redis.url);
    try {
      expect(paid(await hammer([world.proxyUrl], 1, "e1"))).toBe(1);
      const counters = await admin.keys("evict:c:*");
      expect(counters.length).toBeGreaterThan(0);
      // Fill Redis past a small maxmemory with a policy that evicts any key at random.
      const used = Number(/used_memory:(\d+)/.exec(await admin.info("memory"))?.[1]);
      await admin.config("SET", "maxmemory", String(used + 2_000_000));
      await admin.config("SET", "maxmemory-policy", "allkeys-random");
      const junk = "x".repeat(20_000);
      let gone = false;
      for (let i = 0; i < 20_000 && !gone; i++) {
        await admin.set(`junk:${i}`, junk);
        if (i % 20 === 0) gone = (await admin.exists("evict:epoch", ...counters)) < 1 + counters.length;
      }
      expect(gone).toBe(true);
      await admin.config("SET", "maxmemory", "0");
      const refused = await hammer([world.proxyUrl], 2, "e2");
      expect(refused.map((r) => r.error)).toEqual(["budget_unavailable", "budget_unavailable"]);
      expect(refused[0]?.reason).toMatch(LOST);
      expect(world.signCalls()).toBe(1);
    } finally {
      admin.disconnect();
      await world.close();
      await redis.stop();
    }
  }, 120_000);
});

describe("operator reset", () => {
  it("refuses without --yes; with --yes every budget starts from zero on a new epoch", async () => {
    const K = 3n;
    const d = await deploy(K, 1);
    const p = d.procs[0] as ProxyProcess;
    expect(paid(await hammer([p.url], 5, "r1"))).toBe(3);
    await d.redis.stop();
    await d.redis.start();
    expect(await eventually(() => lostAt(p))).toBe(true);

    const no = await cli(d.configs[0] as string, "budgets", "reset");
    expect(no.code).toBe(2);
    expect(no.stdout).toMatch(/Nothing was changed; run `stoka-proxy budgets reset --yes`/);
    expect((await hammer([p.url], 1, "r2"))[0]?.error).toBe("budget_unavailable");
    const status = await cli(d.configs[0] as string, "budgets", "status", "--json");
    expect(JSON.parse(status.stdout)).toMatchObject({ state: "lost" });

    const yes = await cli(d.configs[0] as string, "budgets", "reset", "--yes");
    expect(yes.code).toBe(0);
    expect(yes.stdout).toMatch(/every budget starts from zero/);
    expect(paid(await hammer([p.url], 5, "r3"))).toBe(3);
    expect(d.charged()).toBe(6n * PRICE); // what the operator accepted by resetting
    expect(
      JSON.parse((await cli(d.configs[0] as string, "budgets", "status", "--json")).stdout),
    ).toMatchObject({
      state: "ok",
      epoch: { origin: "reset" },
    });
  }, 120_000);
});

describe("stoka-proxy spend with the Redis budget store", () => {
  it("reads the shared counters (it used to crash querying before the connection was up)", async () => {
    const d = await deploy(10n, 1);
    const p = d.procs[0] as ProxyProcess;
    expect(paid(await hammer([p.url], 2, "s1"))).toBe(2);
    const out = await cli(d.configs[0] as string, "spend", "--json");
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout).budgets).toEqual([
      {
        budget: "shared",
        period: "day",
        used: (2n * PRICE).toString(),
        limit: (10n * PRICE).toString(),
        reserved: "0",
      },
    ]);
    // And says so when the state is lost, instead of showing zero.
    await d.redis.stop();
    await d.redis.start();
    const lost = await cli(d.configs[0] as string, "spend", "--json");
    expect(lost.code).toBe(1);
    expect(lost.stderr).toMatch(/lost its state/);
  }, 120_000);
});
