import { statement } from "../storage/sqlite.js";
import type { Db } from "../storage/sqlite.js";
import { bucketStart, limitKey, periodLabel, rollingSlotMs, ROLLING_SLOTS } from "./budget.js";
import type { Budget, BudgetLimit } from "../config/config.js";
import type { BudgetStore, ReservationRequest, ReserveResult } from "./store.js";

/**
 * Budgets in SQLite, the embedded default. A reservation is one IMMEDIATE transaction over
 * every matching limit: checks and inserts happen under one write lock, so concurrent
 * requests, in this process or another on the same file, cannot overspend.
 */
export class SqliteBudgetStore implements BudgetStore {
  readonly kind = "sqlite" as const;

  constructor(private readonly db: Db) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS reservations (
        payment_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        amount INTEGER NOT NULL,
        budgets TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        lease_until_ms INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS reservations_lease ON reservations(state, lease_until_ms);
      CREATE TABLE IF NOT EXISTS budget_entries (
        payment_id TEXT NOT NULL,
        limit_key TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        amount INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS budget_entries_bucket ON budget_entries(limit_key, bucket);
      CREATE INDEX IF NOT EXISTS budget_entries_payment ON budget_entries(payment_id);
    `);
    this.totals = addBudgetTotals(db);
  }

  /** False only for a file from before the totals opened read-only: its entries are summed. */
  private readonly totals: boolean;

  private usedSync(key: string, limit: BudgetLimit, nowMs: number): bigint {
    const row =
      limit.period.kind === "calendar"
        ? statement(
            this.db,
            this.totals
              ? "SELECT COALESCE(SUM(amount), 0) AS s FROM budget_totals WHERE limit_key = ? AND bucket = ?"
              : "SELECT COALESCE(SUM(amount), 0) AS s FROM budget_entries WHERE limit_key = ? AND bucket = ?",
            true,
          ).get(key, bucketStart(limit.period.unit, nowMs))
        : this.rollingUsed(key, limit.period.seconds, nowMs);
    return (row as { s: bigint }).s;
  }

  /** The slots after the one holding the window's start, plus that slot's entries inside the window. */
  private rollingUsed(key: string, seconds: number, nowMs: number): unknown {
    const since = nowMs - seconds * 1000;
    if (!this.totals)
      return statement(
        this.db,
        "SELECT COALESCE(SUM(amount), 0) AS s FROM budget_entries WHERE limit_key = ? AND at_ms > ?",
        true,
      ).get(key, since);
    const slotMs = rollingSlotMs(seconds);
    const edge = Math.floor(since / slotMs);
    return statement(
      this.db,
      `SELECT (SELECT COALESCE(SUM(amount), 0) FROM budget_totals WHERE limit_key = ? AND bucket > ?)
            + (SELECT COALESCE(SUM(amount), 0) FROM budget_entries WHERE limit_key = ? AND at_ms > ? AND at_ms < ?) AS s`,
      true,
    ).get(key, edge, key, since, (edge + 1) * slotMs);
  }

  async reserve(r: ReservationRequest, record?: () => void): Promise<ReserveResult> {
    return this.reserveNow(r, record);
  }

  /** `reserve`, synchronously: for a caller that batches it into its own transaction (group-commit.ts). */
  reserveNow(r: ReservationRequest, record?: () => void): ReserveResult {
    const run = this.db.transaction((): ReserveResult => {
      const inserts: [string, number][] = [];
      for (const b of r.budgets) {
        for (const limit of b.limits) {
          const key = limitKey(b.name, limit);
          const used = this.usedSync(key, limit, r.nowMs);
          if (used + r.amount > limit.amount) {
            return {
              ok: false,
              denial: {
                budget: b.name,
                period: periodLabel(limit.period),
                limit: limit.amount,
                spent: used,
                price: r.amount,
              },
            };
          }
          inserts.push([key, limit.period.kind === "calendar" ? bucketStart(limit.period.unit, r.nowMs) : 0]);
        }
      }
      const entry = statement(
        this.db,
        "INSERT INTO budget_entries (payment_id, limit_key, bucket, at_ms, amount) VALUES (?, ?, ?, ?, ?)",
      );
      for (const [key, bucket] of inserts) entry.run(r.paymentId, key, bucket, r.nowMs, r.amount);
      statement(
        this.db,
        "INSERT INTO reservations (payment_id, state, amount, budgets, created_ms, lease_until_ms) VALUES (?, 'reserved', ?, ?, ?, ?)",
      ).run(r.paymentId, r.amount, JSON.stringify(r.budgets.map((b) => b.name)), r.nowMs, r.leaseUntilMs);
      record?.();
      return { ok: true };
    });
    return run.immediate();
  }

  private setState(paymentId: string, state: string): void {
    this.db
      .prepare("UPDATE reservations SET state = ? WHERE payment_id = ? AND state = 'reserved'")
      .run(state, paymentId);
  }

  async commit(paymentId: string): Promise<void> {
    this.setState(paymentId, "spent");
  }

  async release(paymentId: string): Promise<void> {
    this.db
      .transaction(() => {
        const changed = this.db
          .prepare("UPDATE reservations SET state = 'released' WHERE payment_id = ? AND state = 'reserved'")
          .run(paymentId).changes;
        if (changed > 0) this.db.prepare("DELETE FROM budget_entries WHERE payment_id = ?").run(paymentId);
      })
      .immediate();
  }

  async markIndeterminate(paymentId: string): Promise<void> {
    this.setState(paymentId, "indeterminate");
  }

  async resolveIndeterminate(paymentId: string, charged: boolean): Promise<void> {
    this.db
      .transaction(() => {
        const to = charged ? "spent" : "released";
        const changed = this.db
          .prepare("UPDATE reservations SET state = ? WHERE payment_id = ? AND state = 'indeterminate'")
          .run(to, paymentId).changes;
        if (changed > 0 && !charged)
          this.db.prepare("DELETE FROM budget_entries WHERE payment_id = ?").run(paymentId);
      })
      .immediate();
  }

  async expireLeases(nowMs: number): Promise<string[]> {
    return this.db
      .transaction(() => {
        const ids = (
          this.db
            .prepare("SELECT payment_id FROM reservations WHERE state = 'reserved' AND lease_until_ms <= ?")
            .all(nowMs) as {
            payment_id: string;
          }[]
        ).map((r) => r.payment_id);
        const mark = this.db.prepare("UPDATE reservations SET state = 'indeterminate' WHERE payment_id = ?");
        for (const id of ids) mark.run(id);
        return ids;
      })
      .immediate();
  }

  async used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint> {
    return this.usedSync(limitKey(budget.name, limit), limit, nowMs);
  }

  async reserved(budget: Budget): Promise<bigint> {
    const rows = this.db
      .prepare("SELECT amount, budgets FROM reservations WHERE state = 'reserved'")
      .safeIntegers()
      .all() as {
      amount: bigint;
      budgets: string;
    }[];
    return rows
      .filter((r) => (JSON.parse(r.budgets) as string[]).includes(budget.name))
      .reduce((s, r) => s + r.amount, 0n);
  }

  async check(): Promise<string | null> {
    try {
      this.db.prepare("SELECT 1").get();
      return null;
    } catch (e) {
      return `budget database: ${(e as Error).message}`;
    }
  }

  async close(): Promise<void> {
    // The database is owned (and closed) by whoever opened it.
  }
}

/**
 * Where an entry is totalled, in SQL over the row `r` (NEW or OLD): its calendar bucket, or for
 * a rolling window (a key `<budget>:rolling_<seconds>s`; budget names have no colon) its slot,
 * at_ms / rollingSlotMs(seconds) (budget.ts). Entries keep bucket 0 for rolling windows, as
 * every build writes them; only the totals are slotted.
 */
function totalsBucket(r: string): string {
  const seconds = `CAST(substr(${r}.limit_key, instr(${r}.limit_key, ':rolling_') + 9) AS INTEGER)`;
  return `(CASE WHEN instr(${r}.limit_key, ':rolling_') > 0
    THEN ${r}.at_ms / max(1000, (${seconds} * 1000 + ${ROLLING_SLOTS - 1}) / ${ROLLING_SLOTS})
    ELSE ${r}.bucket END)`;
}

/**
 * A running total per (limit, calendar bucket or rolling slot), kept by triggers on
 * budget_entries so every writer (reserve, release, reconcile, an older build on the same file)
 * moves it: a reservation then reads one row per calendar limit, and about ROLLING_SLOTS rows
 * plus one slot's entries per rolling window, instead of summing every entry of the period,
 * which grew with each payment (8.5 ms per limit at 100 000 entries). A file made before the
 * totals is upgraded once, backfill included, in one IMMEDIATE transaction (another process
 * opening it at the same time waits, then finds it done). A total that would pass SQLite's
 * 64-bit integers aborts the write, as SUM() did ("integer overflow"), instead of turning into
 * a rounded float. Returns false, changing nothing, for such a file that cannot be written (a
 * read-only copy for `ledger verify` or `spend`): its limits are then summed from the entries.
 */
function addBudgetTotals(db: Db): boolean {
  // Current totals: the table, and triggers that slot rolling windows (an earlier build of
  // the totals kept rolling entries in bucket 0, which the slotted reads would not count).
  const has = () =>
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'budget_totals'").get() !==
      undefined &&
    (
      db
        .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'budget_totals_insert'")
        .get() as { sql: string } | undefined
    )?.sql.includes(":rolling_") === true;
  if (db.readonly) return false;
  const FITS = `SELECT RAISE(ABORT, 'integer overflow: a budget total would pass 2^63 - 1') WHERE NEW.amount > 9223372036854775807 -
       COALESCE((SELECT amount FROM budget_totals WHERE limit_key = NEW.limit_key AND bucket = ${totalsBucket("NEW")}), 0);`;
  try {
    db.transaction(() => {
      if (has()) return;
      db.exec(`
        DROP TRIGGER IF EXISTS budget_totals_insert;
        DROP TRIGGER IF EXISTS budget_totals_delete;
        DROP TRIGGER IF EXISTS budget_totals_update;
        DROP TABLE IF EXISTS budget_totals;
        CREATE TABLE budget_totals (
          limit_key TEXT NOT NULL,
          bucket INTEGER NOT NULL,
          amount INTEGER NOT NULL,
          PRIMARY KEY (limit_key, bucket)
        ) WITHOUT ROWID;
        INSERT INTO budget_totals (limit_key, bucket, amount)
          SELECT r.limit_key, ${totalsBucket("r")}, SUM(r.amount) FROM budget_entries r GROUP BY 1, 2;
        CREATE TRIGGER budget_totals_insert AFTER INSERT ON budget_entries BEGIN
          ${FITS}
          INSERT INTO budget_totals (limit_key, bucket, amount) VALUES (NEW.limit_key, ${totalsBucket("NEW")}, NEW.amount)
            ON CONFLICT (limit_key, bucket) DO UPDATE SET amount = amount + excluded.amount;
        END;
        CREATE TRIGGER budget_totals_delete AFTER DELETE ON budget_entries BEGIN
          UPDATE budget_totals SET amount = amount - OLD.amount WHERE limit_key = OLD.limit_key AND bucket = ${totalsBucket("OLD")};
        END;
        CREATE TRIGGER budget_totals_update AFTER UPDATE OF limit_key, bucket, at_ms, amount ON budget_entries BEGIN
          UPDATE budget_totals SET amount = amount - OLD.amount WHERE limit_key = OLD.limit_key AND bucket = ${totalsBucket("OLD")};
          ${FITS}
          INSERT INTO budget_totals (limit_key, bucket, amount) VALUES (NEW.limit_key, ${totalsBucket("NEW")}, NEW.amount)
            ON CONFLICT (limit_key, bucket) DO UPDATE SET amount = amount + excluded.amount;
        END;
        -- Rolling windows sum from here alone: the amount is in the index.
        CREATE INDEX IF NOT EXISTS budget_entries_window ON budget_entries(limit_key, at_ms, amount);
        DROP INDEX IF EXISTS budget_entries_at;
      `);
    }).immediate();
    return true;
  } catch (e) {
    if (
      (e as { code?: unknown }).code === "SQLITE_READONLY" ||
      String((e as { code?: unknown }).code).startsWith("SQLITE_READONLY_")
    )
      return false;
    throw e;
  }
}
