import { join } from "node:path";
import { SqliteEpochMemory } from "../budget/epoch-memory.js";
import { RedisBudgetStore } from "../budget/redis-store.js";
import { SqliteBudgetStore } from "../budget/sqlite-store.js";
import type { BudgetStore } from "../budget/store.js";
import type { ProxyConfig } from "../config/config.js";
import { Ledger } from "../ledger/ledger.js";
import { openDatabase } from "../storage/sqlite.js";
import type { Db } from "../storage/sqlite.js";

/** The proxy's durable state: the SQLite file (ledger, and budgets unless Redis shares them). */
export interface Stores {
  db: Db;
  ledger: Ledger;
  budgets: BudgetStore;
  close(): Promise<void>;
}

export function databasePath(config: ProxyConfig): string {
  return join(config.dataDir, "stoka-proxy.db");
}

export function openStores(config: ProxyConfig): Stores {
  const db = openDatabase(databasePath(config));
  const ledger = new Ledger(db);
  const budgets: BudgetStore =
    config.budgetStore.kind === "redis"
      ? new RedisBudgetStore({
          url: config.budgetStore.url,
          prefix: config.budgetStore.prefix,
          // The replica's own database remembers the epoch it used, next to its ledger.
          memory: new SqliteEpochMemory(db, ledger, config.budgets),
          budgetNames: config.budgets.map((b) => b.name),
        })
      : new SqliteBudgetStore(db);
  return {
    db,
    ledger,
    budgets,
    close: async () => {
      await budgets.close();
      db.close();
    },
  };
}
