import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { BudgetStoreUnavailable } from "../../src/budget/store.js";
import { PaymentStoreUnavailable } from "../../src/store/payment-store.js";
import type { OpenResult } from "../../src/store/payment-store.js";
import { POOL_DEFAULTS } from "../../src/store/postgres-connection.js";
import { WRITER_LOCKS } from "../../src/store/postgres-liveness.js";
import { MIGRATIONS } from "../../src/store/postgres-migrations.js";
import { PostgresPaymentStore } from "../../src/store/postgres-payment-store.js";
import { createTestDatabase } from "../support/postgres.js";
import type { TestDatabase } from "../support/postgres.js";
import { tcpRelay } from "../support/tcp-relay.js";
import type { TcpRelay } from "../support/tcp-relay.js";

/**
 * What only the shared PostgreSQL store has: migrations that replicas run at once, a ledger
 * the database itself keeps append-only, writers told apart (a running replica's payments are
 * not "recovered" by another), and failing closed while the database cannot be reached, then
 * working again by itself. Outages go through a relay in front of the shared server, which is
 * never stopped.
 */
const P = 1000n;
const T = Date.UTC(2025, 4, 14, 10);
const b: Budget = {
  name: "pg",
  match: {},
  limits: [{ period: { kind: "calendar", unit: "day" }, amount: 1000n * P }],
};
const PASSWORD = "not-for-logs-7f3a";

function open(store: PostgresPaymentStore, id: string, nowMs = T, leaseMs = 600_000): Promise<OpenResult> {
  return store.open({
    payment: {
      paymentId: id,
      requestId: `req-${id}`,
      client: "app",
      route: "store",
      method: "POST",
      url: "http://test.api.stoka.space/v1/store",
      amount: P,
      payTo: "GPAYEE",
      asset: "USDC",
      network: "stellar:testnet",
    },
    budgets: [b],
    nowMs,
    leaseUntilMs: nowMs + leaseMs,
  });
}

/** Retries `fn` until it works (bounded); every failure on the way must be the typed one. */
async function eventually<T>(fn: () => Promise<T>, tries = 40): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      expect(e).toBeInstanceOf(PaymentStoreUnavailable);
      if (i >= tries) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Each payment has its budget row exactly when it has its `reserved` row. */
async function bothOrNeither(db: TestDatabase): Promise<string[]> {
  const payments = (await db.sql<{ payment_id: string }>("SELECT payment_id FROM payments ORDER BY 1")).map(
    (r) => r.payment_id,
  );
  const reserved = (
    await db.sql<{ payment_id: string }>("SELECT payment_id FROM ledger WHERE state = 'reserved' ORDER BY 1")
  ).map((r) => r.payment_id);
  expect(reserved).toEqual(payments);
  return payments;
}

describe("PostgreSQL payment store", () => {
  let db: TestDatabase;
  const stores: PostgresPaymentStore[] = [];
  const relays: TcpRelay[] = [];
  const connect = async (url = db.url, extra = {}) => {
    const s = await PostgresPaymentStore.connect({ url, poolMax: 4, ...extra });
    stores.push(s);
    return s;
  };

  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await Promise.all(relays.splice(0).map((r) => r.close()));
    await db.drop();
  });

  it("replicas starting at once migrate the schema once", async () => {
    await Promise.all([connect(), connect(), connect(), connect()]);
    const rows = await db.sql<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
    expect(rows.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    await connect();
    expect((await db.sql("SELECT * FROM schema_migrations")).length).toBe(MIGRATIONS.length);
  });

  it("a database migrated by a newer stoka-proxy is refused, with the reason", async () => {
    await connect();
    await db.sql("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')");
    const attempt = PostgresPaymentStore.connect({ url: db.url, poolMax: 2 });
    await expect(attempt).rejects.toBeInstanceOf(PaymentStoreUnavailable);
    await expect(attempt).rejects.toThrow(/schema version 999, newer than this stoka-proxy knows/);
  });

  it("the database refuses edits and removals of ledger rows", async () => {
    const s = await connect();
    expect((await open(s, "a")).ok).toBe(true);
    await expect(db.sql("UPDATE ledger SET amount = 1")).rejects.toThrow(/append-only/);
    await expect(db.sql("DELETE FROM ledger")).rejects.toThrow(/append-only/);
    await expect(db.sql("TRUNCATE ledger")).rejects.toThrow(/append-only/);
    expect((await s.verify()).ok).toBe(true);
  });

  it("amounts are exact bigints: NUMERIC in, bigint out, no floats", async () => {
    const s = await connect();
    const big = 2n ** 62n + 12345n;
    const r = await s.open({
      payment: {
        paymentId: "big",
        requestId: "r",
        client: "app",
        route: "store",
        method: "POST",
        url: "http://x/",
        amount: big,
        payTo: "G",
        asset: "USDC",
        network: "n",
      },
      budgets: [{ ...b, limits: [{ period: { kind: "calendar", unit: "day" }, amount: 2n ** 63n }] }],
      nowMs: T,
      leaseUntilMs: T + 1000,
    });
    expect(r.ok).toBe(true);
    const [row] = await s.latest();
    expect(row?.amount).toBe(big);
    expect(await s.used(b, { period: { kind: "calendar", unit: "day" }, amount: 1n }, T)).toBe(big);
    expect((await s.verify()).ok).toBe(true);
  });

  it("a NUL in an upstream's text is stored as U+FFFD, and the chain still verifies", async () => {
    const s = await connect();
    expect((await open(s, "nul")).ok).toBe(true);
    const row = await s.record({
      paymentId: "nul",
      state: "rejected",
      atMs: T + 1,
      tx: null,
      upstreamStatus: 402,
      reason: "bad\u0000byte",
    });
    expect(row.reason).toBe("bad\ufffdbyte");
    expect((await s.latest())[0]?.reason).toBe("bad\ufffdbyte");
    expect((await s.verify()).ok).toBe(true);
  });

  it("a running replica's open payments are not recovered by another; a stopped one's are", async () => {
    const a = await connect();
    const other = await connect();
    expect((await open(a, "live")).ok).toBe(true);
    expect(await other.recoverInterrupted(T + 1)).toEqual({ released: [], indeterminate: [] });
    await a.close();
    // Still `reserved`: its header was never handed to a socket, so it is released.
    expect(await other.recoverInterrupted(T + 2)).toEqual({ released: ["live"], indeterminate: [] });
    expect(await other.indeterminateCount()).toBe(0);
  });

  it("two replicas sweeping leases at once expire each payment once", async () => {
    const [x, y] = [await connect(), await connect()];
    for (let i = 0; i < 40; i++) expect((await open(x, `l${i}`, T, 1000)).ok).toBe(true);
    const [ex, ey] = await Promise.all([x.expireLeases(T + 1000), y.expireLeases(T + 1000)]);
    expect([...ex, ...ey].sort()).toEqual(Array.from({ length: 40 }, (_, i) => `l${i}`).sort());
    const rows = await db.sql<{ n: string }>(
      "SELECT count(*) AS n FROM ledger WHERE state = 'indeterminate'",
    );
    expect(Number(rows[0]?.n)).toBe(40);
  });

  it("database gone (port closed): every call fails closed with the typed error, then works again by itself", async () => {
    const relay = await tcpRelay(5432);
    relays.push(relay);
    const s = await connect(db.urlVia(relay.port, PASSWORD), {
      connectTimeoutMs: 1000,
      statementTimeoutMs: 1000,
    });
    expect((await open(s, "before")).ok).toBe(true);
    await relay.stop();
    await expect(open(s, "during")).rejects.toBeInstanceOf(BudgetStoreUnavailable);
    await expect(open(s, "during")).rejects.toBeInstanceOf(PaymentStoreUnavailable);
    await expect(
      s.record({
        paymentId: "before",
        state: "settled",
        atMs: T + 1,
        tx: null,
        upstreamStatus: 200,
        reason: null,
      }),
    ).rejects.toBeInstanceOf(PaymentStoreUnavailable);
    await expect(s.expireLeases(T)).rejects.toBeInstanceOf(PaymentStoreUnavailable);
    await expect(s.used(b, b.limits[0]!, T)).rejects.toBeInstanceOf(PaymentStoreUnavailable);
    const why = await s.check();
    expect(why).toContain(`127.0.0.1:${relay.port}/${db.name}`);
    expect(why).not.toContain(PASSWORD);
    await relay.start();
    expect((await eventually(() => open(s, "after"))).ok).toBe(true);
    expect(await s.check()).toBeNull();
    await s.record({
      paymentId: "before",
      state: "settled",
      atMs: T + 2,
      tx: null,
      upstreamStatus: 200,
      reason: null,
    });
    expect(await bothOrNeither(db)).toEqual(["after", "before"]);
    expect((await s.verify()).ok).toBe(true);
  });

  it("database silent (a partition): calls fail closed within their timeouts, then recover", async () => {
    const relay = await tcpRelay(5432);
    relays.push(relay);
    const s = await connect(db.urlVia(relay.port), { connectTimeoutMs: 1000, statementTimeoutMs: 1000 });
    expect((await open(s, "before")).ok).toBe(true);
    await relay.blackhole();
    const started = Date.now();
    await expect(open(s, "silent")).rejects.toBeInstanceOf(PaymentStoreUnavailable);
    expect(Date.now() - started).toBeLessThan(10_000);
    await relay.start();
    expect((await eventually(() => open(s, "after"))).ok).toBe(true);
    expect(await bothOrNeither(db)).toEqual(["after", "before"]);
  });

  it("connections cut mid-transaction: each reservation landed whole or not at all", async () => {
    const relay = await tcpRelay(5432);
    relays.push(relay);
    const s = await connect(db.urlVia(relay.port), { connectTimeoutMs: 1000, statementTimeoutMs: 1000 });
    const attempts = Array.from({ length: 40 }, (_, i) =>
      open(s, `cut${i}`).then(
        (r) => (r.ok ? "ok" : "denied"),
        (e: unknown) =>
          e instanceof PaymentStoreUnavailable ? "unavailable" : `other: ${(e as Error).message}`,
      ),
    );
    await new Promise((r) => setTimeout(r, 15));
    relay.cut();
    const outcomes = await Promise.all(attempts);
    expect(outcomes.filter((o) => o !== "ok" && o !== "unavailable")).toEqual([]);
    const landed = new Set(await bothOrNeither(db));
    // What was answered ok is there; what failed may have committed (its answer lost) or not.
    for (const [i, o] of outcomes.entries()) if (o === "ok") expect(landed.has(`cut${i}`)).toBe(true);
    expect((await eventually(() => open(s, "after"))).ok).toBe(true);
    expect((await s.verify()).ok).toBe(true);
  });

  it("a replica frozen while it holds the chain lock delays the others, briefly, and loses its transaction", async () => {
    const s = await connect();
    const relay = await tcpRelay(5432);
    relays.push(relay);
    // A replica's session (the store's own settings) that took the head lock, then went silent.
    const stalled = new pg.Client({
      connectionString: db.urlVia(relay.port),
      idle_in_transaction_session_timeout: POOL_DEFAULTS.idleInTransactionTimeoutMs,
    });
    stalled.on("error", () => undefined);
    await stalled.connect();
    await stalled.query("BEGIN");
    await stalled.query("SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE");
    relay.freeze();
    const started = Date.now();
    expect((await open(s, "waited")).ok).toBe(true);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThan(POOL_DEFAULTS.idleInTransactionTimeoutMs - 500);
    expect(waited).toBeLessThan(POOL_DEFAULTS.statementTimeoutMs);
    await stalled.end().catch(() => undefined);
    expect((await s.verify()).ok).toBe(true);
  });

  it("backends terminated by the server (pg_terminate_backend): typed failures at most, then it works", async () => {
    const s = await connect();
    for (let i = 0; i < 4; i++) expect((await open(s, `t${i}`)).ok).toBe(true);
    const lockHolder = async () => {
      const rows = await db.sql<{ pid: number }>(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted",
        [WRITER_LOCKS, s.owner],
      );
      return rows[0]?.pid ?? null;
    };
    const before = await lockHolder();
    expect(before).not.toBeNull();
    await db.sql(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    expect((await eventually(() => open(s, "again"), 10)).ok).toBe(true);
    // The writer lock came back too: a peer does not take this replica's open payments.
    const peer = await connect();
    // Taken again by a new session (not the terminated one, which may linger a moment).
    const retaken = async () => {
      const holder = await lockHolder();
      return holder !== null && holder !== before;
    };
    for (let i = 0; i < 100 && !(await retaken()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await retaken()).toBe(true);
    expect(await peer.recoverInterrupted(T + 1)).toEqual({ released: [], indeterminate: [] });
    expect(await bothOrNeither(db)).toHaveLength(5);
  });
});
