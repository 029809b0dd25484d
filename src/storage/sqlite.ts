import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import type { Database as Db, Statement } from "better-sqlite3";

/**
 * The proxy's embedded database (budgets and the ledger): one file in the data directory, WAL
 * mode, synchronous=FULL so a committed payment record survives `kill -9` and power loss.
 */
export function openDatabase(path: string): Db {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  return db;
}

export type { Db };

const statements = new WeakMap<Db, Map<string, Statement>>();

/**
 * A prepared statement, compiled once per connection: preparing the same SQL on every payment
 * cost about a fifth of the store's time on the payment path. `safe` sets whether integers come
 * back as bigint, every time, since the cached statement is shared by its callers.
 */
export function statement(db: Db, sql: string, safe = false): Statement {
  let byDb = statements.get(db);
  if (!byDb) {
    byDb = new Map();
    statements.set(db, byDb);
  }
  let s = byDb.get(sql);
  if (!s) {
    s = db.prepare(sql);
    byDb.set(sql, s);
  }
  // Only statements that return rows take safeIntegers.
  return s.reader ? s.safeIntegers(safe) : s;
}
