import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { Budget } from "../../src/config/config.js";
import type { PaymentStore } from "../../src/store/payment-store.js";
import { PostgresPaymentStore } from "../../src/store/postgres-payment-store.js";
import type { PostgresStoreOptions } from "../../src/store/postgres-connection.js";
import { SqlitePaymentStore } from "../../src/store/sqlite-payment-store.js";
import { createTestDatabase } from "./postgres.js";

/**
 * One place for a payment store per test, of either kind: a fresh SQLite file in a temp
 * directory, or a fresh PostgreSQL database. `target` is what a child process needs to open
 * the same store; `sql` reads or changes the tables directly, as an operator could.
 */
export type StoreKind = "sqlite" | "postgres";
export const STORE_KINDS: readonly StoreKind[] = ["sqlite", "postgres"];

export type StoreTarget = { kind: "sqlite"; path: string } | ({ kind: "postgres" } & PostgresStoreOptions);

export interface StorePlace {
  kind: StoreKind;
  target: StoreTarget;
  open(): Promise<PaymentStore>;
  sql(text: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** Lets direct edits through (PostgreSQL refuses UPDATE/DELETE on the ledger by trigger). */
  allowLedgerEdits(): Promise<void>;
  /** The table with one row per payment's budget state. */
  paymentsTable: string;
  drop(): Promise<void>;
}

export function openTarget(target: StoreTarget): Promise<PaymentStore> {
  if (target.kind === "sqlite") return Promise.resolve(SqlitePaymentStore.open(target.path));
  const { kind: _kind, ...options } = target;
  return PostgresPaymentStore.connect(options);
}

export async function makePlace(kind: StoreKind): Promise<StorePlace> {
  if (kind === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "stoka-store-"));
    const path = join(dir, "stoka-proxy.db");
    const target: StoreTarget = { kind, path };
    return {
      kind,
      target,
      open: () => openTarget(target),
      sql: (text, params = []) => {
        const db = new Database(path);
        try {
          const stmt = db.prepare(text);
          return Promise.resolve(
            stmt.reader ? (stmt.all(...params) as Record<string, unknown>[]) : (stmt.run(...params), []),
          );
        } finally {
          db.close();
        }
      },
      allowLedgerEdits: () => Promise.resolve(),
      paymentsTable: "reservations",
      drop: () => {
        rmSync(dir, { recursive: true, force: true });
        return Promise.resolve();
      },
    };
  }
  const db = await createTestDatabase();
  // Few connections each: several test files (and their worker processes) share the server.
  const target: StoreTarget = { kind, url: db.url, poolMax: 4 };
  return {
    kind,
    target,
    open: () => openTarget(target),
    sql: (text, params) => db.sql(text, params),
    allowLedgerEdits: async () => {
      await db.sql("ALTER TABLE ledger DISABLE TRIGGER USER");
    },
    paymentsTable: "payments",
    drop: () => db.drop(),
  };
}

/** Budgets cross a process boundary as JSON: amounts as decimal strings. */
export function budgetsToJson(budgets: readonly Budget[]): string {
  return JSON.stringify(budgets, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
}

export function budgetsFromJson(text: string): Budget[] {
  return JSON.parse(text, (_k, v: unknown) =>
    typeof v === "string" && /^[0-9]+n$/.test(v) ? BigInt(v.slice(0, -1)) : v,
  ) as Budget[];
}
