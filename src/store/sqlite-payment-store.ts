import { SqliteBudgetStore } from "../budget/sqlite-store.js";
import type { Budget, BudgetLimit } from "../config/config.js";
import type { ChainCheck, LedgerFields, LedgerRow } from "../ledger/entry.js";
import { Ledger, fromDb } from "../ledger/ledger.js";
import type { PaymentSummary } from "../ledger/ledger.js";
import { GroupCommit } from "../storage/group-commit.js";
import { openDatabase, statement } from "../storage/sqlite.js";
import type { Db } from "../storage/sqlite.js";
import { PaymentStoreUnavailable, UnknownPayment, checkAmount, factsOf } from "./payment-store.js";
import type {
  RecoveredPayments,
  ChainHead,
  OpenRequest,
  OpenResult,
  PaymentStore,
  Resolution,
  StateChange,
} from "./payment-store.js";
import {
  INTERRUPTED_REASON,
  NEVER_SENT_REASON,
  interruptedOutcome,
  LEASE_EXPIRED_REASON,
  budgetStepFor,
  moveBudget,
  resolveMove,
} from "./payment-transitions.js";
import type { BudgetMove, BudgetState } from "./payment-transitions.js";

/**
 * The payment store in the data directory's SQLite file, for one replica: the existing
 * ledger and budget tables (same schema, same chain, same file), with every ledger row and its
 * budget step in ONE IMMEDIATE transaction, so a crash leaves both or neither. Writes asked for
 * in the same event-loop turn share that transaction and its commit (storage/group-commit.ts);
 * each caller's promise still settles only once its own write is committed.
 */
export class SqlitePaymentStore implements PaymentStore {
  readonly kind = "sqlite" as const;
  readonly ledger: Ledger;
  /** The budget tables of the same file (tests and `spend` read them as before). */
  readonly budgets: SqliteBudgetStore;
  private readonly writes: GroupCommit;

  /** Opens (and later closes) the database file. */
  static open(path: string): SqlitePaymentStore {
    return new SqlitePaymentStore(openDatabase(path), { ownsDb: true });
  }

  constructor(
    readonly db: Db,
    private readonly options: { ownsDb?: boolean } = {},
  ) {
    this.ledger = new Ledger(db);
    this.budgets = new SqliteBudgetStore(db);
    this.writes = new GroupCommit(db);
  }

  /** A write in the next group commit, its "the file cannot be used" errors as PaymentStoreUnavailable. */
  private write<T>(op: () => T): Promise<T> {
    return this.writes.run(op).catch((e: unknown) => {
      throw unavailable(e);
    });
  }

  /** Runs `fn` mapping "the file cannot be used" errors to PaymentStoreUnavailable. */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw unavailable(e);
    }
  }

  async open(r: OpenRequest): Promise<OpenResult> {
    checkAmount(r.payment.amount);
    let row: LedgerRow | undefined;
    const fields: LedgerFields = {
      ...r.payment,
      atMs: r.nowMs,
      state: "reserved",
      tx: null,
      upstreamStatus: null,
      reason: null,
    };
    // The reservation's checks, inserts and the ledger append run inside one savepoint of the
    // batch's IMMEDIATE transaction.
    const result = await this.write(() =>
      this.budgets.reserveNow(
        {
          paymentId: r.payment.paymentId,
          budgets: r.budgets,
          amount: r.payment.amount,
          nowMs: r.nowMs,
          leaseUntilMs: r.leaseUntilMs,
        },
        () => {
          row = this.ledger.append(fields);
        },
      ),
    );
    if (!result.ok) return result;
    if (!row) throw new Error("the reservation committed without its ledger row");
    return { ok: true, row };
  }

  private firstRow(paymentId: string): LedgerRow | undefined {
    const raw = statement(
      this.db,
      "SELECT * FROM ledger WHERE payment_id = ? ORDER BY seq LIMIT 1",
      true,
    ).get(paymentId) as Record<string, unknown> | undefined;
    return raw ? fromDb(raw) : undefined;
  }

  private lastRow(paymentId: string): LedgerRow | undefined {
    const raw = statement(
      this.db,
      "SELECT * FROM ledger WHERE payment_id = ? ORDER BY seq DESC LIMIT 1",
      true,
    ).get(paymentId) as Record<string, unknown> | undefined;
    return raw ? fromDb(raw) : undefined;
  }

  private budgetState(paymentId: string): BudgetState | undefined {
    const r = statement(this.db, "SELECT state FROM reservations WHERE payment_id = ?").get(paymentId) as
      { state: BudgetState } | undefined;
    return r?.state;
  }

  private move(paymentId: string, move: BudgetMove | null): void {
    if (!move) return;
    statement(this.db, "UPDATE reservations SET state = ? WHERE payment_id = ?").run(move.to, paymentId);
    if (move.frees) statement(this.db, "DELETE FROM budget_entries WHERE payment_id = ?").run(paymentId);
  }

  async record(change: StateChange): Promise<LedgerRow> {
    return this.write((): LedgerRow => {
      const first = this.firstRow(change.paymentId);
      if (!first) throw new UnknownPayment(change.paymentId);
      const from = this.budgetState(change.paymentId);
      if (from) this.move(change.paymentId, moveBudget(from, budgetStepFor(change.state)));
      return this.ledger.append({
        ...factsOf(first),
        atMs: change.atMs,
        state: change.state,
        tx: change.tx,
        upstreamStatus: change.upstreamStatus,
        reason: change.reason,
      });
    });
  }

  async resolveIndeterminate(res: Resolution): Promise<LedgerRow | null> {
    return this.write((): LedgerRow | null => {
      const last = this.lastRow(res.paymentId);
      if (!last) throw new UnknownPayment(res.paymentId);
      if (last.state !== "indeterminate") return null;
      const from = this.budgetState(res.paymentId);
      if (from) this.move(res.paymentId, resolveMove(from, res.charged));
      return this.ledger.append({
        ...factsOf(last),
        atMs: res.atMs,
        state: res.charged ? "settled" : "rejected",
        tx: last.tx,
        upstreamStatus: null,
        reason: res.reason,
      });
    });
  }

  /** `rows` (latest rows of open payments) become indeterminate, each with its row. */
  private hold(rows: readonly LedgerRow[], nowMs: number, reason: string): string[] {
    for (const row of rows) {
      const from = this.budgetState(row.paymentId);
      if (from) this.move(row.paymentId, moveBudget(from, "hold"));
      this.ledger.append({
        ...factsOf(row),
        atMs: nowMs,
        state: "indeterminate",
        tx: row.tx,
        upstreamStatus: null,
        reason,
      });
    }
    return rows.map((r) => r.paymentId);
  }

  async expireLeases(nowMs: number): Promise<string[]> {
    return this.write(() => {
      const ids = (
        this.db
          .prepare(
            "SELECT payment_id FROM reservations WHERE state = 'reserved' AND lease_until_ms <= ? ORDER BY created_ms",
          )
          .all(nowMs) as { payment_id: string }[]
      ).map((r) => r.payment_id);
      const rows = ids.map((id) => this.lastRow(id)).filter((r): r is LedgerRow => r !== undefined);
      return this.hold(rows, nowMs, LEASE_EXPIRED_REASON);
    });
  }

  async recoverInterrupted(nowMs: number): Promise<RecoveredPayments> {
    // One writer per file, and it is starting: whatever it left open was interrupted.
    return this.guard(() =>
      this.db
        .transaction((): RecoveredPayments => {
          const open = this.ledger.inState("reserved", "sent");
          const never = open.filter((r) => interruptedOutcome(r.state).state === "failed");
          for (const row of never) {
            const from = this.budgetState(row.paymentId);
            if (from) this.move(row.paymentId, moveBudget(from, "release"));
            this.ledger.append({
              ...factsOf(row),
              atMs: nowMs,
              state: "failed",
              tx: row.tx,
              upstreamStatus: null,
              reason: NEVER_SENT_REASON,
            });
          }
          const maybe = open.filter((r) => !never.includes(r));
          return {
            released: never.map((r) => r.paymentId),
            indeterminate: this.hold(maybe, nowMs, INTERRUPTED_REASON),
          };
        })
        .immediate(),
    );
  }

  /**
   * In pages: a statement left iterating between awaits would keep the connection busy and
   * refuse every other use of it meanwhile.
   */
  async *rows(sinceMs = 0): AsyncGenerator<LedgerRow> {
    const page = this.db
      .prepare(`SELECT * FROM ledger WHERE seq > ? AND at_ms >= ? ORDER BY seq LIMIT ${PAGE}`)
      .safeIntegers();
    let after = 0;
    for (;;) {
      const raw = this.guard(() => page.all(after, sinceMs) as Record<string, unknown>[]);
      for (const r of raw) {
        const row = fromDb(r);
        after = row.seq;
        yield row;
      }
      if (raw.length < PAGE) return;
    }
  }

  async latest(): Promise<PaymentSummary[]> {
    return this.guard(() => this.ledger.latest());
  }

  async head(): Promise<ChainHead | null> {
    return this.guard(() => this.ledger.head());
  }

  async verify(): Promise<ChainCheck> {
    return this.guard(() => this.db.transaction(() => this.ledger.verify())());
  }

  async used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint> {
    return this.budgets.used(budget, limit, nowMs).catch((e: unknown) => {
      throw unavailable(e);
    });
  }

  async reserved(budget: Budget): Promise<bigint> {
    return this.budgets.reserved(budget).catch((e: unknown) => {
      throw unavailable(e);
    });
  }

  async indeterminateCount(): Promise<number> {
    return this.guard(() => this.ledger.inState("indeterminate").length);
  }

  async check(): Promise<string | null> {
    return this.budgets.check();
  }

  async close(): Promise<void> {
    // Writes already asked for are committed (and their callers answered) before the file closes.
    if (this.db.open) this.writes.flushAll();
    if (this.options.ownsDb && this.db.open) this.db.close();
  }
}

const PAGE = 1000;

/** I/O trouble with the file (busy past the timeout, disk full, read-only, closed) is an outage. */
function unavailable(e: unknown): Error {
  if (e instanceof UnknownPayment || e instanceof RangeError || e instanceof PaymentStoreUnavailable)
    return e as Error;
  const code = (e as { code?: unknown } | null)?.code;
  const io =
    typeof code === "string" &&
    /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|NOMEM|PROTOCOL|CORRUPT|NOTADB)/.test(code);
  const closed = e instanceof TypeError && /database connection is not open/i.test(e.message);
  if (io || closed) return new PaymentStoreUnavailable(`payment database file: ${(e as Error).message}`);
  return e as Error;
}
