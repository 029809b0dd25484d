import type pg from "pg";
import type { Budget, BudgetLimit } from "../config/config.js";
import { LRUCache } from "lru-cache";
import { canonical, rowHash } from "../ledger/entry.js";
import type { ChainCheck, LedgerFields, LedgerRow, PaymentState } from "../ledger/entry.js";
import type { PaymentSummary } from "../ledger/ledger.js";
import { redactUrl } from "../secrets/redact.js";
import { ChainWalk } from "./chain-walk.js";
import { PaymentStoreUnavailable, UnknownPayment, checkAmount, factsOf } from "./payment-store.js";
import type {
  ChainHead,
  PaymentFacts,
  OpenRequest,
  OpenResult,
  PaymentStore,
  RecoveredPayments,
  Resolution,
  StateChange,
} from "./payment-store.js";
import {
  BUDGET_STATES,
  LEASE_EXPIRED_REASON,
  budgetStepFor,
  firstDenial,
  interruptedOutcome,
  limitChecks,
  moveBudget,
  resolveMove,
} from "./payment-transitions.js";
import type { BudgetMove, BudgetState, LimitCheck } from "./payment-transitions.js";
import {
  createPool,
  databaseWhere,
  errorText,
  isRetryable,
  isStatementFault,
} from "./postgres-connection.js";
import type { PostgresStoreOptions } from "./postgres-connection.js";
import { WriterLiveness, WRITER_LOCKS } from "./postgres-liveness.js";
import { migrate } from "./postgres-migrations.js";

/**
 * The payment store in PostgreSQL, shared by every replica of a team gateway: the ledger and
 * the budget counters in one database, so a reservation and its `reserved` row, and every
 * later row and its budget step, commit together or not at all.
 *
 * Every write transaction first locks the chain head row (`SELECT … FOR UPDATE`). That one
 * lock orders all writers of all processes: seq and prev_hash are assigned in commit order,
 * and a reservation reads the limits' use after every earlier reservation committed, so no
 * interleaving can overspend. A transaction that dies with its process or connection is rolled
 * back by the server and releases the lock.
 *
 * The hot path (open, record) is one statement each, a database function holding the lock
 * for no network round trip (stoka_open, stoka_append in postgres-migrations.ts); the hash is
 * made from this side's canonical() text, and the row that comes back is checked with
 * rowHash. Rare writes (leases, recovery, reconciliation) are explicit transactions.
 *
 * Fail closed: any failure to reach or use the database throws PaymentStoreUnavailable. The
 * pool opens new connections as they are needed, so the store works again by itself once the
 * database answers. A COMMIT whose answer is lost may still have committed: the caller has
 * refused (nothing signed), and the reservation's lease later turns it indeterminate, so the
 * money stays counted until reconciliation frees it.
 */
export class PostgresPaymentStore implements PaymentStore {
  readonly kind = "postgres" as const;
  private readonly pool: pg.Pool;
  private readonly where: string;
  private readonly liveness: WriterLiveness;
  private schema: Promise<void> | undefined;
  private closed = false;
  /** Payments' fixed facts (never changed once written), so a state change is one round trip. */
  private readonly facts = new LRUCache<string, PaymentFacts>({ max: 10_000 });

  /** Opens the pool and migrates the schema; throws PaymentStoreUnavailable when it cannot. */
  static async connect(options: PostgresStoreOptions): Promise<PostgresPaymentStore> {
    const store = new PostgresPaymentStore(options);
    try {
      await store.ready();
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  /** Without waiting: the schema is migrated on first use, and again after a failed try. */
  constructor(private readonly options: PostgresStoreOptions) {
    this.pool = createPool(options);
    this.where = databaseWhere(options.url);
    this.liveness = new WriterLiveness(options);
  }

  /** This process's writer id (recorded on the payments it opens). */
  get owner(): number {
    return this.liveness.owner;
  }

  /** Whether other replicas can see this one running (it holds its writer lock). */
  get writerLockHeld(): boolean {
    return this.liveness.held;
  }

  private ready(): Promise<void> {
    this.schema ??= (async () => {
      const client = await this.pool.connect();
      try {
        await migrate(client);
        client.release();
      } catch (e) {
        client.release(true);
        throw e;
      }
      await this.liveness.start();
    })().catch((e: unknown) => {
      this.schema = undefined;
      throw this.failure(e);
    });
    return this.schema;
  }

  /** Our own errors and a statement's fault pass; everything else means "cannot be used now". */
  private failure(e: unknown): Error {
    if (e instanceof PaymentStoreUnavailable || e instanceof UnknownPayment || e instanceof RangeError)
      return e;
    if (isStatementFault(e)) return e as Error;
    return new PaymentStoreUnavailable(
      `payment database ${this.where} cannot be used: ${errorText(e, this.options.url)}`,
    );
  }

  /**
   * One write transaction holding the chain head lock. `fn` returns its value, or a Rollback
   * of it to leave the database as it was. A serialization failure or deadlock (the server
   * rolled everything back) is run again; nothing else is, since a lost COMMIT may have landed.
   */
  private async write<T>(fn: (c: pg.PoolClient, head: ChainHead) => Promise<T | Rollback<T>>): Promise<T> {
    if (this.closed) throw new PaymentStoreUnavailable(`payment database ${this.where}: the store is closed`);
    await this.ready();
    for (let attempt = 1; ; attempt++) {
      const client = await this.checkout();
      let failed = false;
      try {
        await client.query("BEGIN");
        const h = await client.query<{ seq: string; hash: string }>(
          "SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE",
        );
        const row = h.rows[0];
        if (!row) throw new PaymentStoreUnavailable(`payment database ${this.where} has no chain head row`);
        const out = await fn(client, { seq: Number(row.seq), hash: row.hash });
        if (out instanceof Rollback) {
          await client.query("ROLLBACK");
          return out.value;
        }
        await client.query("COMMIT");
        return out;
      } catch (e) {
        failed = true;
        await client.query("ROLLBACK").catch(() => undefined);
        if (isRetryable(e) && attempt < 3) continue;
        throw this.failure(e);
      } finally {
        // A connection that failed mid-transaction is not trusted again: it is closed.
        this.checkin(client, failed);
      }
    }
  }

  /**
   * A connection of our own for a transaction. A connection that breaks between two statements
   * reports it as an event, not through a query: it is caught here (the next statement fails),
   * since an unheard error event would end the process.
   */
  private async checkout(): Promise<pg.PoolClient> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw this.failure(e);
    }
    client.on("error", ignoreBetweenStatements);
    return client;
  }

  private checkin(client: pg.PoolClient, broken: boolean): void {
    client.off("error", ignoreBetweenStatements);
    client.release(broken ? true : undefined);
  }

  private async read<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    if (this.closed) throw new PaymentStoreUnavailable(`payment database ${this.where}: the store is closed`);
    await this.ready();
    try {
      return (await this.pool.query<R>(sql, params)).rows;
    } catch (e) {
      throw this.failure(e);
    }
  }

  /** Appends one row under the held head lock and moves the payment's summary with it. */
  private async append(
    c: pg.PoolClient,
    head: ChainHead,
    fields: LedgerFields,
    budgetState: BudgetState,
    frees: boolean,
  ): Promise<LedgerRow> {
    const seq = head.seq + 1;
    const prevHash = head.hash;
    const hash = rowHash(prevHash, seq, fields);
    await c.query(
      `WITH l AS (${INSERT_LEDGER}),
            h AS (UPDATE ledger_head SET seq = $1, hash = $18 WHERE id = 1),
            d AS (DELETE FROM budget_entries WHERE payment_id = $2 AND $20::boolean)
       UPDATE payments SET ledger_state = $13, last_seq = $1, started_ms = LEAST(started_ms, $4), budget_state = $19
        WHERE payment_id = $2`,
      [...ledgerParams(seq, fields, prevHash, hash), budgetState, frees, fields.payer ?? null],
    );
    head.seq = seq;
    head.hash = hash;
    return { ...fields, seq, prevHash, hash };
  }

  /**
   * One statement, one round trip: stoka_open locks the head, checks every limit and, only
   * when the price fits all of them, writes everything. The denial is worked out here from the
   * use it read (the first limit that does not fit, as SQLite reports it).
   */
  async open(r: OpenRequest): Promise<OpenResult> {
    checkAmount(r.payment.amount);
    const checks = limitChecks(r.budgets, r.nowMs);
    // The URL is kept without secrets (`?api_key=REDACTED`), as in the SQLite ledger: the
    // ledger is exported and shared, and the hash covers what is stored.
    const fields: LedgerFields = storable({
      ...r.payment,
      url: redactUrl(r.payment.url),
      atMs: r.nowMs,
      state: "reserved",
      tx: null,
      upstreamStatus: null,
      reason: null,
    });
    const [out] = await this.call<{
      r_used: string[];
      r_seq: string | null;
      r_prev: string | null;
      r_hash: string | null;
    }>(`SELECT * FROM stoka_open(${placeholders(21)})`, [
      ...factParams(fields),
      tailOf(fields),
      [...new Set(r.budgets.map((b) => b.name))],
      this.liveness.owner,
      r.leaseUntilMs,
      checks.map((k) => k.key),
      checks.map((k) => k.calendar),
      checks.map((k) => k.bucket),
      checks.map((k) => k.sinceMs),
      checks.map((k) => k.limit.toString()),
      fields.payer ?? null,
    ]);
    if (!out)
      throw new PaymentStoreUnavailable(`payment database ${this.where} did not answer the reservation`);
    if (out.r_seq === null) {
      const denial = firstDenial(checks, out.r_used.map(BigInt), r.payment.amount);
      if (!denial) throw new Error("the database refused a reservation that fits every limit");
      return { ok: false, denial };
    }
    this.facts.set(fields.paymentId, factsOf(fields));
    return { ok: true, row: this.written(fields, out) };
  }

  /** The row the database wrote, checked against the chain as entry.ts computes it. */
  private written(
    fields: LedgerFields,
    out: { r_seq: string | null; r_prev: string | null; r_hash: string | null },
  ): LedgerRow {
    const row: LedgerRow = {
      ...fields,
      seq: Number(out.r_seq),
      prevHash: String(out.r_prev),
      hash: String(out.r_hash),
    };
    if (rowHash(row.prevHash, row.seq, fields) !== row.hash)
      throw new Error(`row ${row.seq} was written with a hash this ledger format does not give`);
    return row;
  }

  /** A statement on its own (its own transaction), run again only after a rollback the server reported. */
  private async call<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    if (this.closed) throw new PaymentStoreUnavailable(`payment database ${this.where}: the store is closed`);
    await this.ready();
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.pool.query<R>(sql, params)).rows;
      } catch (e) {
        if (isRetryable(e) && attempt < 3) continue;
        throw this.failure(e);
      }
    }
  }

  /** A payment's fixed facts: remembered from `open`, or read (they never change, so no lock). */
  private async factsFor(paymentId: string): Promise<PaymentFacts> {
    const known = this.facts.get(paymentId);
    if (known) return known;
    const rows = await this.read<PgRow>(
      "SELECT l.* FROM payments p JOIN ledger l ON l.seq = p.first_seq WHERE p.payment_id = $1",
      [paymentId],
    );
    const first = rows[0];
    if (!first) throw new UnknownPayment(paymentId);
    const facts = factsOf(fromPg(first));
    this.facts.set(paymentId, facts);
    return facts;
  }

  /** One statement: stoka_append writes the row and applies the budget step the table gives. */
  async record(change: StateChange): Promise<LedgerRow> {
    const fields: LedgerFields = storable({
      ...(await this.factsFor(change.paymentId)),
      atMs: change.atMs,
      state: change.state,
      tx: change.tx,
      upstreamStatus: change.upstreamStatus,
      reason: change.reason,
    });
    const step = budgetStepFor(change.state);
    const moves = BUDGET_STATES.flatMap((from) => {
      const m = moveBudget(from, step);
      return m ? [{ from, ...m }] : [];
    });
    const [out] = await this.call<{ r_seq: string | null; r_prev: string | null; r_hash: string | null }>(
      `SELECT * FROM stoka_append(${placeholders(20)})`,
      [
        ...factParams(fields),
        fields.state,
        fields.tx,
        fields.upstreamStatus,
        fields.reason,
        tailOf(fields),
        moves.map((m) => m.from),
        moves.map((m) => m.to),
        moves.map((m) => m.frees),
        fields.payer ?? null,
      ],
    );
    if (!out || out.r_seq === null) throw new UnknownPayment(change.paymentId);
    return this.written(fields, out);
  }

  async resolveIndeterminate(res: Resolution): Promise<LedgerRow | null> {
    return this.write(async (c, head): Promise<LedgerRow | null | Rollback<LedgerRow | null>> => {
      const p = await paymentOf(c, res.paymentId, "last");
      if (!p) throw new UnknownPayment(res.paymentId);
      if (p.row.state !== "indeterminate") return new Rollback(null);
      return this.append(
        c,
        head,
        {
          ...factsOf(p.row),
          atMs: res.atMs,
          state: res.charged ? "settled" : "rejected",
          tx: p.row.tx,
          upstreamStatus: null,
          reason: res.reason.replaceAll("\u0000", "\ufffd"),
        },
        ...after(p.budgetState, resolveMove(p.budgetState, res.charged)),
      );
    });
  }

  /** Open payments picked by `where` become indeterminate with `reason`, in batches. */
  private async holdOpen(
    where: string,
    params: unknown[],
    nowMs: number,
    reason: string,
    gone?: boolean,
  ): Promise<string[]> {
    return (await this.closeOpen(where, params, nowMs, () => ({ state: "indeterminate", reason }), gone))
      .indeterminate;
  }

  /** Appends each open payment's closing row as `outcome` says (indeterminate, or failed = released). */
  private async closeOpen(
    where: string,
    params: unknown[],
    nowMs: number,
    outcome: (latestState: string) => { state: "failed" | "indeterminate"; reason: string },
    gone?: boolean,
  ): Promise<RecoveredPayments> {
    const done: RecoveredPayments = { released: [], indeterminate: [] };
    for (let batch = 0; batch < 1000; batch++) {
      const n = await this.write(async (c, head) => {
        let owners: number[] | null = null;
        if (gone) {
          // Writers whose lock can be taken have stopped; the lock, held to COMMIT, keeps a
          // new writer from drawing that id meanwhile.
          const o = await c.query<{ owner: number }>(
            `SELECT o.owner FROM (SELECT DISTINCT owner FROM payments WHERE budget_state = 'reserved' AND owner <> $1) o
              WHERE pg_try_advisory_xact_lock($2, o.owner)`,
            [this.liveness.owner, WRITER_LOCKS],
          );
          owners = o.rows.map((x) => x.owner);
          if (owners.length === 0) return 0;
        }
        const open = await c.query<PgRow>(
          `SELECT l.* FROM payments p JOIN ledger l ON l.seq = p.last_seq
            WHERE p.budget_state = 'reserved' AND ${where} ${owners ? `AND p.owner = ANY($${params.length + 1}::int[])` : ""}
            ORDER BY l.seq LIMIT ${BATCH}`,
          owners ? [...params, owners] : params,
        );
        for (const raw of open.rows) {
          const row = fromPg(raw);
          const o = outcome(row.state);
          const released = o.state === "failed";
          await this.append(
            c,
            head,
            {
              ...factsOf(row),
              atMs: nowMs,
              state: o.state,
              tx: row.tx,
              upstreamStatus: null,
              reason: o.reason,
            },
            released ? "released" : "indeterminate",
            released,
          );
          (released ? done.released : done.indeterminate).push(row.paymentId);
        }
        return open.rows.length;
      });
      if (n < BATCH) break;
    }
    return done;
  }

  async expireLeases(nowMs: number): Promise<string[]> {
    return this.holdOpen("p.lease_until_ms <= $1", [nowMs], nowMs, LEASE_EXPIRED_REASON);
  }

  async recoverInterrupted(nowMs: number): Promise<RecoveredPayments> {
    return this.closeOpen("TRUE", [], nowMs, interruptedOutcome, true);
  }

  async *rows(sinceMs = 0): AsyncGenerator<LedgerRow> {
    yield* this.snapshot(async function* (c) {
      yield* pages(c, "at_ms >= $2", [sinceMs]);
    });
  }

  async verify(): Promise<ChainCheck> {
    const walk = new ChainWalk();
    let head: ChainHead | null = null;
    for await (const item of this.snapshot(async function* (c) {
      const h = await c.query<{ seq: string; hash: string }>(
        "SELECT seq, hash FROM ledger_head WHERE id = 1",
      );
      yield { head: h.rows[0] ? { seq: Number(h.rows[0].seq), hash: h.rows[0].hash } : null };
      yield* pages(c, "TRUE", []);
    })) {
      if ("head" in item) head = item.head;
      else if (walk.push(item)) break;
    }
    return walk.finish(head);
  }

  /** Reads in one REPEATABLE READ snapshot: rows appended meanwhile are not half-seen. */
  private async *snapshot<T>(body: (c: pg.PoolClient) => AsyncGenerator<T>): AsyncGenerator<T> {
    if (this.closed) throw new PaymentStoreUnavailable(`payment database ${this.where}: the store is closed`);
    await this.ready();
    const client = await this.checkout();
    let ended = false;
    let failed = false;
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      yield* body(client);
      await client.query("COMMIT");
      ended = true;
    } catch (e) {
      failed = true;
      throw this.failure(e);
    } finally {
      // Also when the reader stops early: its transaction is ended before the connection is reused.
      if (!ended) await client.query("ROLLBACK").catch(() => (failed = true));
      this.checkin(client, failed);
    }
  }

  async latest(): Promise<PaymentSummary[]> {
    const rows = await this.read<PgRow & { started_ms: string; first_seq: string }>(
      "SELECT l.*, p.started_ms, p.first_seq FROM payments p JOIN ledger l ON l.seq = p.last_seq ORDER BY l.seq",
    );
    return rows.map((r) => ({
      ...fromPg(r),
      startedAtMs: Number(r.started_ms),
      firstSeq: Number(r.first_seq),
    }));
  }

  async head(): Promise<ChainHead | null> {
    const rows = await this.read<{ seq: string; hash: string }>(
      "SELECT seq, hash FROM ledger_head WHERE id = 1",
    );
    const h = rows[0];
    // The SQLite ledger has no head before its first row: the same answer here.
    return h && Number(h.seq) > 0 ? { seq: Number(h.seq), hash: h.hash } : null;
  }

  async used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint> {
    const checks = limitChecks([{ ...budget, limits: [limit] }], nowMs);
    const rows = await this.read<{ used: string }>(USED_SQL, usedParams(checks));
    return BigInt(rows[0]?.used ?? "0");
  }

  async reserved(budget: Budget): Promise<bigint> {
    const rows = await this.read<{ s: string }>(
      "SELECT COALESCE(SUM(amount), 0)::text AS s FROM payments WHERE budget_state = 'reserved' AND $1 = ANY(budgets)",
      [budget.name],
    );
    return BigInt(rows[0]?.s ?? "0");
  }

  async indeterminateCount(): Promise<number> {
    const rows = await this.read<{ n: string }>(
      "SELECT count(*) AS n FROM payments WHERE ledger_state = 'indeterminate'",
    );
    return Number(rows[0]?.n ?? 0);
  }

  async check(): Promise<string | null> {
    try {
      await this.read("SELECT 1");
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.liveness.close();
    await this.pool.end().catch(() => undefined);
  }
}

const ignoreBetweenStatements = () => undefined;

/** What `write` returns to end its transaction without changes. */
class Rollback<T> {
  constructor(readonly value: T) {}
}

const BATCH = 500;

const INSERT_LEDGER = `INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount, pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash, payer)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $21)`;

function ledgerParams(seq: number, f: LedgerFields, prevHash: string, hash: string): unknown[] {
  return [
    seq,
    f.paymentId,
    f.requestId,
    f.atMs,
    f.client,
    f.route,
    f.method,
    f.url,
    f.amount.toString(),
    f.payTo,
    f.asset,
    f.network,
    f.state,
    f.tx,
    f.upstreamStatus,
    f.reason,
    prevHash,
    hash,
  ];
}

/**
 * PostgreSQL text cannot hold U+0000, and a reason can quote an upstream's words: each one
 * becomes U+FFFD before the row is hashed, so what is stored is what the hash covers (SQLite
 * keeps such a character as it is).
 */
function storable(f: LedgerFields): LedgerFields {
  const clean = (v: string) => (v.includes("\u0000") ? v.replaceAll("\u0000", "\ufffd") : v);
  const cleanOrNull = (v: string | null) => (v === null ? null : clean(v));
  return {
    ...f,
    paymentId: clean(f.paymentId),
    requestId: clean(f.requestId),
    client: clean(f.client),
    route: clean(f.route),
    method: clean(f.method),
    url: clean(f.url),
    payTo: clean(f.payTo),
    asset: clean(f.asset),
    network: clean(f.network),
    tx: cleanOrNull(f.tx),
    reason: cleanOrNull(f.reason),
    payer: cleanOrNull(f.payer ?? null),
  };
}

/** $1, …, $n */
function placeholders(n: number): string {
  return Array.from({ length: n }, (_, i) => `$${i + 1}`).join(", ");
}

/** The fixed facts in stoka_open / stoka_append's parameter order. */
function factParams(f: LedgerFields): unknown[] {
  return [
    f.paymentId,
    f.requestId,
    f.atMs,
    f.client,
    f.route,
    f.method,
    f.url,
    f.amount.toString(),
    f.payTo,
    f.asset,
    f.network,
  ];
}

/** canonical() after its seq: `canonical(0, f)` is `[0,` followed by exactly this. */
function tailOf(f: LedgerFields): string {
  return canonical(0, f).slice(3);
}

/** Each limit's use, in the order of `checks`: calendar by bucket total, rolling by time (migration 3). */
const USED_SQL = `
  SELECT stoka_limit_used(k.key, k.calendar, k.bucket, k.since)::text AS used
    FROM unnest($1::text[], $2::boolean[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS k(key, calendar, bucket, since, i)
   ORDER BY k.i`;

function usedParams(checks: readonly LimitCheck[]): unknown[] {
  return [
    checks.map((k) => k.key),
    checks.map((k) => k.calendar),
    checks.map((k) => k.bucket),
    checks.map((k) => k.sinceMs),
  ];
}

/** A payment's budget state and its first (fixed facts) or latest (current state) row. */
async function paymentOf(
  c: pg.PoolClient,
  paymentId: string,
  which: "first" | "last",
): Promise<{ budgetState: BudgetState; row: LedgerRow } | null> {
  const r = await c.query<PgRow & { budget_state: BudgetState }>(
    `SELECT p.budget_state, l.* FROM payments p JOIN ledger l ON l.seq = p.${which === "first" ? "first_seq" : "last_seq"}
      WHERE p.payment_id = $1`,
    [paymentId],
  );
  const raw = r.rows[0];
  return raw ? { budgetState: raw.budget_state, row: fromPg(raw) } : null;
}

function after(from: BudgetState, move: BudgetMove | null): [BudgetState, boolean] {
  return move ? [move.to, move.frees] : [from, false];
}

/** Keyset pages in seq order; BIGINT and NUMERIC arrive as strings and are parsed exactly. */
async function* pages(c: pg.PoolClient, where: string, params: unknown[]): AsyncGenerator<LedgerRow> {
  let after = 0;
  for (;;) {
    const r = await c.query<PgRow>(
      `SELECT * FROM ledger WHERE seq > $1 AND ${where} ORDER BY seq LIMIT ${PAGE}`,
      [after, ...params],
    );
    for (const raw of r.rows) {
      const row = fromPg(raw);
      after = row.seq;
      yield row;
    }
    if (r.rows.length < PAGE) return;
  }
}

const PAGE = 1000;

interface PgRow {
  seq: string;
  payment_id: string;
  request_id: string;
  at_ms: string;
  client: string;
  route: string;
  method: string;
  url: string;
  amount: string;
  pay_to: string;
  asset: string;
  network: string;
  state: string;
  tx: string | null;
  upstream_status: number | null;
  reason: string | null;
  prev_hash: string;
  hash: string;
  /** null for rows written before schema 2 (and when the signer did not say). */
  payer?: string | null;
}

function fromPg(r: PgRow): LedgerRow {
  return {
    seq: Number(r.seq),
    paymentId: r.payment_id,
    requestId: r.request_id,
    atMs: Number(r.at_ms),
    client: r.client,
    route: r.route,
    method: r.method,
    url: r.url,
    amount: BigInt(r.amount),
    payTo: r.pay_to,
    asset: r.asset,
    network: r.network,
    state: r.state as PaymentState,
    tx: r.tx,
    upstreamStatus: r.upstream_status,
    reason: r.reason,
    payer: r.payer ?? null,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}
