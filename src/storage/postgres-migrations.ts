import type pg from "pg";
import { GENESIS_HASH } from "../ledger/entry.js";
import { PaymentStoreUnavailable } from "./payment-store.js";

/**
 * The PostgreSQL payment store's schema, as numbered migrations applied in order and recorded
 * in `schema_migrations`. Every replica runs them on start: one transaction under an advisory
 * lock, so replicas starting together apply each migration once and the others wait, then find
 * it applied. PostgreSQL's DDL is transactional: a migration applies whole or not at all.
 * Append new migrations; never edit one that shipped.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const STATES = "'reserved', 'sent', 'settled', 'rejected', 'indeterminate', 'failed'";
const BUDGET_STATES = "'reserved', 'spent', 'released', 'indeterminate'";

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "ledger, chain head, payments, budget entries",
    sql: `
      -- The hash-chained ledger: the same columns and chain as the SQLite ledger table.
      CREATE TABLE ledger (
        seq BIGINT PRIMARY KEY CHECK (seq > 0),
        payment_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        client TEXT NOT NULL,
        route TEXT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        amount NUMERIC(39, 0) NOT NULL CHECK (amount >= 0),
        pay_to TEXT NOT NULL,
        asset TEXT NOT NULL,
        network TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN (${STATES})),
        tx TEXT,
        upstream_status INTEGER,
        reason TEXT,
        prev_hash TEXT NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
        hash TEXT NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
      );
      CREATE INDEX ledger_payment ON ledger (payment_id, seq);
      CREATE INDEX ledger_at ON ledger (at_ms);

      -- Rows are appended, never changed: an accidental UPDATE or DELETE is refused. (Whoever
      -- owns the database can still drop this; the chain is what detects that.)
      CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the ledger is append-only';
      END $$;
      CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
        FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
      CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

      -- The last row's seq and hash. Every write locks this row first: one writer at a time,
      -- so seq and prev_hash follow commit order and a removed tail row is detected.
      CREATE TABLE ledger_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL CHECK (seq >= 0),
        hash TEXT NOT NULL
      );
      INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, '${GENESIS_HASH}');

      -- One row per payment: where its money stands in the budgets, and its latest ledger row.
      CREATE TABLE payments (
        payment_id TEXT PRIMARY KEY,
        budget_state TEXT NOT NULL CHECK (budget_state IN (${BUDGET_STATES})),
        ledger_state TEXT NOT NULL CHECK (ledger_state IN (${STATES})),
        amount NUMERIC(39, 0) NOT NULL CHECK (amount >= 0),
        budgets TEXT[] NOT NULL,
        -- The writer (a process) that opened it; recovery takes over only writers that are gone.
        owner INTEGER NOT NULL,
        created_ms BIGINT NOT NULL,
        lease_until_ms BIGINT NOT NULL,
        started_ms BIGINT NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL
      );
      CREATE INDEX payments_open ON payments (lease_until_ms) WHERE budget_state = 'reserved';
      CREATE INDEX payments_indeterminate ON payments (payment_id) WHERE ledger_state = 'indeterminate';

      -- What each payment counts against each limit; removed when its money is given back.
      CREATE TABLE budget_entries (
        payment_id TEXT NOT NULL REFERENCES payments (payment_id),
        limit_key TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        amount NUMERIC(39, 0) NOT NULL CHECK (amount >= 0),
        PRIMARY KEY (payment_id, limit_key)
      );
      CREATE INDEX budget_entries_bucket ON budget_entries (limit_key, bucket);
      CREATE INDEX budget_entries_at ON budget_entries (limit_key, at_ms);
    `,
  },
];

export const SCHEMA_VERSION = Math.max(...MIGRATIONS.map((m) => m.version));

/** Serialises migrations across replicas (a transaction-level advisory lock, per database). */
const MIGRATION_LOCK = 0x53544b5000000001n; // "STKP" + 1

/** Applies the migrations this database lacks; returns the versions applied now. */
export async function migrate(client: pg.ClientBase): Promise<number[]> {
  const applied: number[] = [];
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK.toString()]);
    // Created under the lock: two CREATE TABLE IF NOT EXISTS at once can still collide.
    await client.query(
      "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    );
    const done = new Set(
      (await client.query<{ version: number }>("SELECT version FROM schema_migrations")).rows.map(
        (r) => r.version,
      ),
    );
    const newest = Math.max(0, ...done);
    if (newest > SCHEMA_VERSION) {
      // A newer stoka-proxy migrated this database: this one may not understand its rows.
      throw new PaymentStoreUnavailable(
        `the payment database has schema version ${newest}, newer than this stoka-proxy knows (${SCHEMA_VERSION}); upgrade stoka-proxy`,
      );
    }
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [
        m.version,
        m.name,
      ]);
      applied.push(m.version);
    }
    await client.query("COMMIT");
    return applied;
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}
