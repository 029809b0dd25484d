import { afterAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import type { Budget, BudgetLimit } from "../../src/config/config.js";
import { SqliteEpochMemory } from "../../src/budget/epoch-memory.js";
import { beginMaintenance, readEpoch, writeEpoch } from "../../src/budget/redis-restore.js";
import { RedisBudgetStore } from "../../src/budget/redis-store.js";
import { emptyPlan, planRestore } from "../../src/budget/restore-plan.js";
import { BudgetStoreUnavailable } from "../../src/budget/store.js";
import { Ledger } from "../../src/ledger/ledger.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import type { Db } from "../../src/storage/sqlite.js";

/**
 * The epoch rules of the Redis budget store against the real Redis on 127.0.0.1:6379, each
 * test under a prefix of its own. "Redis lost its data" is played by deleting that prefix's
 * keys (never FLUSHALL on a server others use too; the flush and restart cases with a private
 * redis-server are in redis-state-loss.test.ts).
 */
const URL = "redis://127.0.0.1:6379";
const RUN = `stoka-epoch-${process.pid}-${Date.now()}`;
const admin = new Redis(URL);
const opened: RedisBudgetStore[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
  const keys = await admin.keys(`${RUN}:*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

const day: Budget = {
  name: "d",
  match: {},
  limits: [{ period: { kind: "calendar", unit: "day" }, amount: 10_000n }],
};
const rolling: Budget = {
  name: "r",
  match: {},
  limits: [{ period: { kind: "rolling", seconds: 3600 }, amount: 10_000n }],
};
const BUDGETS = [day, rolling];
let n = 0;
const newPrefix = () => `${RUN}:${++n}`;

async function wipe(prefix: string): Promise<void> {
  const keys = await admin.keys(`${prefix}:*`);
  if (keys.length > 0) await admin.del(...keys);
}

/** One replica: its own SQLite database (ledger + remembered epoch) and a store on `prefix`. */
function replica(prefix: string, db: Db = openDatabase(":memory:")) {
  const ledger = new Ledger(db);
  const events: string[] = [];
  const store = new RedisBudgetStore({
    url: URL,
    prefix,
    memory: new SqliteEpochMemory(db, ledger, BUDGETS),
    budgetNames: BUDGETS.map((b) => b.name),
    watchIntervalMs: 0,
  });
  store.watch({
    lost: () => events.push("lost"),
    restored: (_id, origin) => events.push(`restored:${origin}`),
  });
  opened.push(store);
  let seq = 0;
  return {
    db,
    ledger,
    store,
    events,
    /** Reserves like the proxy: the ledger row is written with the reservation. */
    pay: (amount = 1000n, nowMs = Date.now()) => {
      const id = `p${++seq}-${Math.random().toString(36).slice(2)}`;
      return store.reserve(
        { paymentId: id, budgets: BUDGETS, amount, nowMs, leaseUntilMs: nowMs + 60_000 },
        () =>
          ledger.append({
            paymentId: id,
            requestId: id,
            atMs: nowMs,
            client: "default",
            route: "store",
            method: "POST",
            url: "http://127.0.0.1:1/v1/store",
            amount,
            payTo: "G",
            asset: "A",
            network: "stellar:testnet",
            state: "reserved",
            tx: null,
            upstreamStatus: null,
            reason: null,
          }),
      );
    },
    used: () => store.used(day, day.limits[0] as BudgetLimit, Date.now()),
  };
}

const refusedLost = async (p: Promise<unknown>) => {
  await expect(p).rejects.toBeInstanceOf(BudgetStoreUnavailable);
  await expect(p).rejects.toThrow(/lost its state/);
};

describe("Redis budget epoch", () => {
  it("a fresh deployment initialises once; a second replica joins the same epoch", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    const b = replica(prefix);
    expect((await a.pay()).ok).toBe(true);
    expect((await b.pay()).ok).toBe(true);
    const record = await readEpoch(admin, prefix);
    expect(record).toMatchObject({ origin: "init", lost: null, gen: 2 });
    expect(await a.used()).toBe(2000n);
    expect(a.events).toEqual([]);
  });

  it("Redis emptied while replicas run: refused, tombstoned for replicas that start later, one event", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    expect((await a.pay()).ok).toBe(true);
    await wipe(prefix);
    await refusedLost(a.pay());
    await refusedLost(a.pay());
    expect(a.events).toEqual(["lost"]);
    expect(await a.store.check()).toMatch(/lost its state/);
    expect(a.store.stateLost()).toMatch(/budgets restore/);
    // A brand-new replica (empty ledger, nothing remembered) must not start a new epoch.
    const fresh = replica(prefix);
    await refusedLost(fresh.pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(/epoch record is missing/);
  });

  it("every replica restarted and Redis empty: the epoch remembered in SQLite says lost", async () => {
    const prefix = newPrefix();
    const db = openDatabase(":memory:");
    const before = replica(prefix, db);
    expect((await before.pay()).ok).toBe(true);
    await before.store.close();
    await wipe(prefix);
    const after = replica(prefix, db); // the same database, a new process
    await refusedLost(after.pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(/this replica last used epoch/);
  });

  it("a replica that remembers nothing but has payments in the current period does not initialise", async () => {
    const prefix = newPrefix();
    const db = openDatabase(":memory:");
    const old = replica(prefix, db);
    expect((await old.pay()).ok).toBe(true);
    db.exec("DELETE FROM budget_store_epoch"); // e.g. a database from before epochs existed
    await old.store.close();
    await wipe(prefix);
    await refusedLost(replica(prefix, db).pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(
      /ledger has 1 payment\(s\) in the current budget periods/,
    );
  });

  it("a first-start epoch made over lost state is marked lost by the replica that remembers", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    expect((await a.pay()).ok).toBe(true);
    await wipe(prefix);
    const fresh = replica(prefix); // wins the race: initialises the empty Redis
    expect((await fresh.pay()).ok).toBe(true);
    await refusedLost(a.pay()); // knows better, and says so in Redis
    await refusedLost(fresh.pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(/replaced by a first-start initialisation/);
  });

  it("the epoch record evicted while counters remain: no new epoch over them", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    expect((await a.pay()).ok).toBe(true);
    await admin.del(`${prefix}:epoch`);
    await refusedLost(replica(prefix).pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(/budget keys of an earlier epoch/);
    await refusedLost(a.pay());
  });

  it.each([
    ["a calendar counter", "c"],
    ["a rolling window", "r"],
  ])("%s evicted on its own is loss (the epoch record marks what was made)", async (_n, family) => {
    const prefix = newPrefix();
    const a = replica(prefix);
    expect((await a.pay()).ok).toBe(true);
    const [key] = await admin.keys(`${prefix}:${family}:*`);
    expect(key).toBeDefined();
    await admin.del(key as string);
    await refusedLost(a.pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(/vanished/);
  });

  it("a release after its counter vanished does not recreate it: loss", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    expect((await a.pay()).ok).toBe(true);
    const [id] = await admin.zrange(`${prefix}:leases`, "0", "-1");
    const [key] = await admin.keys(`${prefix}:c:*`);
    await admin.del(key as string);
    await refusedLost(a.store.release(id as string));
    expect(await admin.exists(key as string)).toBe(0);
  });

  it("a generation that went back (an old snapshot, a lagging replica) is loss", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    for (let i = 0; i < 3; i++) expect((await a.pay()).ok).toBe(true);
    await admin.hset(`${prefix}:epoch`, "gen", "1");
    await refusedLost(a.pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(/generation went back from 3 to 1/);
  });

  it("an operator's reset is taken up by running replicas without a restart", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    expect((await a.pay()).ok).toBe(true);
    await wipe(prefix);
    await refusedLost(a.pay());
    await beginMaintenance(admin, prefix, "reset in progress");
    await writeEpoch(admin, prefix, emptyPlan(), "reset", []);
    expect((await a.pay()).ok).toBe(true);
    expect(await a.store.check()).toBeNull();
    expect(a.store.stateLost()).toBeNull();
    expect(a.events).toEqual(["lost", "restored:reset"]);
    expect(await a.used()).toBe(1000n);
  });

  it("a restore is taken up only by replicas whose ledger it read to the end", async () => {
    const prefix = newPrefix();
    const a = replica(prefix);
    const b = replica(prefix);
    expect((await a.pay(3000n)).ok).toBe(true);
    expect((await b.pay(2000n)).ok).toBe(true);
    await wipe(prefix);
    await refusedLost(a.pay());
    const scope = {
      prefix,
      budgets: BUDGETS,
      paidHosts: [],
      gatewayUpstream: new globalThis.URL("http://127.0.0.1:1"),
    };
    const mark = (r: typeof a) => ({
      id: (r.db.prepare("SELECT ledger_id FROM ledger_identity").get() as { ledger_id: string }).ledger_id,
      head: r.ledger.head()?.seq ?? 0,
    });

    // Only a's ledger: b refuses the epoch and marks it lost for everybody.
    await beginMaintenance(admin, prefix, "restore in progress");
    await writeEpoch(admin, prefix, planRestore(a.ledger.latest(), scope, Date.now(), 60_000), "restore", [
      mark(a),
    ]);
    expect((await a.pay()).ok).toBe(true);
    await refusedLost(b.pay());
    expect((await readEpoch(admin, prefix))?.lost).toMatch(
      /did not include 1 payment\(s\) of this replica's ledger/,
    );
    await refusedLost(a.pay());

    // Both ledgers: both take it up; the counters hold what both ledgers count.
    await beginMaintenance(admin, prefix, "restore in progress");
    const all = [...a.ledger.latest(), ...b.ledger.latest()];
    await writeEpoch(admin, prefix, planRestore(all, scope, Date.now(), 60_000), "restore", [
      mark(a),
      mark(b),
    ]);
    expect(await a.used()).toBe(6000n);
    expect((await b.pay()).ok).toBe(true);
    expect((await a.pay()).ok).toBe(true);
    expect(await a.used()).toBe(8000n);
    const full = await a.pay(5000n);
    expect(full.ok).toBe(false);
    // The restored open reservations can still be released by their replica.
    const [first] = b.ledger.latest();
    await b.store.release(first?.paymentId as string);
    expect(await a.used()).toBe(6000n);
  });
});
