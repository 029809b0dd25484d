import { randomUUID } from "node:crypto";
import type { Ledger } from "../ledger/ledger.js";
import type { Db } from "../storage/sqlite.js";
import type { Budget } from "../config/config.js";
import type { LedgerFacts, RememberedEpoch } from "./epoch.js";
import { earliestCurrentStart, isCounted } from "./ledger-spend.js";

/**
 * What a replica must remember across its own restarts so that a Redis that came back empty
 * is never taken for a fresh deployment: the epoch it last used (in its SQLite database, next
 * to its ledger) and what its ledger holds in the current budget periods.
 */
export interface EpochMemory {
  remembered(prefix: string): RememberedEpoch | null;
  remember(prefix: string, epoch: RememberedEpoch): void;
  ledgerFacts(nowMs: number): LedgerFacts;
}

/** A ledger database's identity: a random id made once, so a restore can name what it summed. */
export function ledgerIdentity(db: Db): string {
  db.exec(
    "CREATE TABLE IF NOT EXISTS ledger_identity (id INTEGER PRIMARY KEY CHECK (id = 1), ledger_id TEXT NOT NULL)",
  );
  db.prepare("INSERT OR IGNORE INTO ledger_identity (id, ledger_id) VALUES (1, ?)").run(randomUUID());
  return (db.prepare("SELECT ledger_id FROM ledger_identity WHERE id = 1").get() as { ledger_id: string })
    .ledger_id;
}

export class SqliteEpochMemory implements EpochMemory {
  private readonly id: string;

  constructor(
    private readonly db: Db,
    private readonly ledger: Ledger,
    private readonly budgets: readonly Budget[],
  ) {
    db.exec(
      "CREATE TABLE IF NOT EXISTS budget_store_epoch (prefix TEXT PRIMARY KEY, epoch TEXT NOT NULL, origin TEXT NOT NULL, seen_ms INTEGER NOT NULL)",
    );
    this.id = ledgerIdentity(db);
  }

  remembered(prefix: string): RememberedEpoch | null {
    const row = this.db
      .prepare("SELECT epoch, origin FROM budget_store_epoch WHERE prefix = ?")
      .get(prefix) as { epoch: string; origin: string } | undefined;
    return row ? { id: row.epoch, origin: row.origin } : null;
  }

  remember(prefix: string, epoch: RememberedEpoch): void {
    this.db
      .prepare(
        "INSERT INTO budget_store_epoch (prefix, epoch, origin, seen_ms) VALUES (?, ?, ?, ?) ON CONFLICT(prefix) DO UPDATE SET epoch = excluded.epoch, origin = excluded.origin, seen_ms = excluded.seen_ms",
      )
      .run(prefix, epoch.id, epoch.origin, Date.now());
  }

  ledgerFacts(nowMs: number): LedgerFacts {
    const since = earliestCurrentStart(this.budgets, nowMs);
    if (since === null) return { id: this.id, current: [] };
    return {
      id: this.id,
      current: this.ledger
        .latest()
        .filter((p) => isCounted(p.state) && p.startedAtMs >= since)
        .map((p) => ({ paymentId: p.paymentId, firstSeq: p.firstSeq })),
    };
  }
}

/** Memory that lasts as long as the process (tests and tools that hold no ledger). */
export function processMemory(): EpochMemory {
  const seen = new Map<string, RememberedEpoch>();
  return {
    remembered: (prefix) => seen.get(prefix) ?? null,
    remember: (prefix, epoch) => void seen.set(prefix, epoch),
    ledgerFacts: () => ({ id: "process", current: [] }),
  };
}
