import type { Db } from "./sqlite.js";

/**
 * Group commit for the payment store's SQLite file (docs/architecture.md, Money state): writes
 * asked for during one event-loop turn run in ONE IMMEDIATE transaction, committed once
 * (synchronous=FULL: one WAL fsync for the batch instead of one per write).
 *
 * What each caller sees is what a transaction of its own gives:
 * - its promise settles only after the COMMIT that holds its write returned, so "resolved"
 *   still means "durable" (a `sent` row is on disk before the paid retry's first byte);
 * - each write runs in a SAVEPOINT: one that throws is undone alone and rejects alone, the
 *   others of the batch still commit;
 * - writes run in the order they were asked for, under the file's write lock, so every check
 *   (budget room, the chain head) sees the writes before it, in this process and in any other
 *   one on the same file;
 * - when the COMMIT (or BEGIN) itself fails, or a write's error made SQLite roll the whole
 *   transaction back, nothing of the batch was written and every caller gets that error.
 */
const MAX_BATCH = 256;

interface Pending {
  op: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class GroupCommit {
  private pending: Pending[] = [];
  private scheduled = false;

  constructor(private readonly db: Db) {}

  /** Runs `op` (synchronous SQLite work) in the next batch; resolves once it is committed. */
  run<T>(op: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate, not a microtask: the writes of every request handled in this turn join.
        setImmediate(() => this.flushAll());
      }
    });
  }

  /** Commits everything pending now (close() calls it so nothing asked for is dropped). */
  flushAll(): void {
    this.scheduled = false;
    while (this.pending.length > 0) this.flush(this.pending.splice(0, MAX_BATCH));
  }

  private flush(batch: Pending[]): void {
    const outcomes: Outcome[] = [];
    try {
      this.db
        .transaction(() => {
          for (const p of batch) {
            try {
              // A nested better-sqlite3 transaction is a SAVEPOINT: a failing write undoes itself only.
              outcomes.push({ ok: true, value: this.db.transaction(p.op)() });
            } catch (error) {
              // SQLite may have rolled the whole transaction back (RAISE(ROLLBACK), disk full, I/O,
              // out of memory): the earlier writes are gone, and a later one would run and commit
              // on its own while its caller is told the batch failed. Abandon the batch.
              if (!this.db.inTransaction) throw error;
              outcomes.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => {
      const o = outcomes[i] as Outcome;
      if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    });
  }
}
