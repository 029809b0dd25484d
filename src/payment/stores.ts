import { join } from "node:path";
import { SqliteEpochMemory } from "../budget/epoch-memory.js";
import { RedisBudgetStore } from "../budget/redis-store.js";
import type { ProxyConfig } from "../config/config.js";
import { Ledger } from "../ledger/ledger.js";
import type { Logger } from "../observability/logger.js";
import type { BudgetReadings } from "../observability/metrics.js";
import { openDatabase } from "../storage/sqlite.js";
import { LedgerBesideBudgets } from "../store/ledger-beside-budgets.js";
import type { PaymentStore } from "../store/payment-store.js";
import { PostgresPaymentStore } from "../store/postgres-payment-store.js";
import { SqlitePaymentStore } from "../store/sqlite-payment-store.js";
import { createPool } from "../store/postgres-connection.js";
import type { EventStore } from "../operator/security/event-store.js";
import { PostgresEventStore } from "../operator/security/postgres-event-store.js";
import { SqliteEventStore } from "../operator/security/sqlite-event-store.js";

/**
 * The proxy's durable money state, opened from the config (docs/configuration.md "Payment
 * store"): `payments` is where every payment is booked and every reader (reconciler, gauges,
 * /readyz, the CLI) reads.
 *
 *   payment_store sqlite, budget_store sqlite → SqlitePaymentStore (the data_dir file)
 *   payment_store sqlite, budget_store redis  → LedgerBesideBudgets (data_dir ledger + Redis)
 *   payment_store postgres                    → PostgresPaymentStore (one database, replicas share it)
 */
export interface Stores {
  payments: PaymentStore;
  /** The budget readings (`used`, `reserved`), and Redis's loss and restore when it has them. */
  budgets: BudgetReadings;
  /**
   * The data directory's SQLite ledger (kinds sqlite and redis), read directly by tests and
   * the Redis restore. With PostgreSQL there is none: reading it throws.
   */
  readonly ledger: Ledger;
  /** Security events, next to the payments: the SQLite file, or the shared database. */
  events: EventStore;
  close(): Promise<void>;
}

export function databasePath(config: ProxyConfig): string {
  return join(config.dataDir, "stoka-proxy.db");
}

/**
 * Opens the configured store. PostgreSQL connects lazily (the schema is migrated on first use
 * and again after a failed try), so a database that is down at start leaves the proxy running
 * and refusing payments until it answers.
 */
export function openStores(config: ProxyConfig, logger: Logger): Stores {
  if (config.paymentStore.kind === "postgres") {
    const payments = new PostgresPaymentStore({
      url: config.paymentStore.url,
      poolMax: config.paymentStore.poolMax,
    });
    // A small pool of its own: security events never take a connection a payment waits for.
    const eventPool = createPool({ url: config.paymentStore.url, poolMax: 2 });
    return {
      payments,
      budgets: payments,
      get ledger(): Ledger {
        throw new Error("the ledger is in PostgreSQL: read it through stores.payments");
      },
      events: new PostgresEventStore(eventPool),
      close: async () => {
        await payments.close();
        await eventPool.end().catch(() => undefined);
      },
    };
  }
  const db = openDatabase(databasePath(config));
  if (config.budgetStore.kind === "redis") {
    const ledger = new Ledger(db);
    const budgets = new RedisBudgetStore({
      url: config.budgetStore.url,
      prefix: config.budgetStore.prefix,
      // The replica's own database remembers the epoch it used, next to its ledger.
      memory: new SqliteEpochMemory(db, ledger, config.budgets),
      budgetNames: config.budgets.map((b) => b.name),
    });
    const payments = new LedgerBesideBudgets(db, ledger, budgets, logger);
    return { payments, budgets, ledger, events: new SqliteEventStore(db), close: () => payments.close() };
  }
  const payments = new SqlitePaymentStore(db, { ownsDb: true });
  return {
    payments,
    budgets: payments.budgets,
    ledger: payments.ledger,
    events: new SqliteEventStore(db),
    close: () => payments.close(),
  };
}
