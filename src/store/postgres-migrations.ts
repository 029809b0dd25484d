import type pg from "pg";
import { ROLLING_SLOTS } from "../budget/budget.js";
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

      -- A row's hash, as ledger/entry.ts rowHash computes it: sha256 over the previous hash, a
      -- newline and the canonical JSON [seq, ...fields]. The writer sends the JSON after the
      -- seq ("tail", made by the same canonical() as SQLite's rows); only the seq, known once
      -- the head is locked, is filled in here.
      CREATE FUNCTION stoka_row_hash(prev TEXT, seq BIGINT, tail TEXT) RETURNS TEXT
        LANGUAGE sql IMMUTABLE STRICT AS $$
          SELECT encode(sha256(convert_to(prev || E'\n[' || seq::text || ',' || tail, 'UTF8')), 'hex')
        $$;

      -- A reservation in one statement (one round trip, its own transaction): lock the head,
      -- read every limit's use, and only if the price fits them all, write the reserved row,
      -- the payment and its budget entries. r_seq is null when refused; r_used says why.
      CREATE FUNCTION stoka_open(
        p_payment_id TEXT, p_request_id TEXT, p_at_ms BIGINT, p_client TEXT, p_route TEXT,
        p_method TEXT, p_url TEXT, p_amount NUMERIC, p_pay_to TEXT, p_asset TEXT, p_network TEXT,
        p_tail TEXT, p_budgets TEXT[], p_owner INTEGER, p_lease_until_ms BIGINT,
        p_keys TEXT[], p_calendar BOOLEAN[], p_buckets BIGINT[], p_since BIGINT[], p_limits NUMERIC[],
        OUT r_used NUMERIC[], OUT r_seq BIGINT, OUT r_prev TEXT, OUT r_hash TEXT)
      LANGUAGE plpgsql AS $$
      DECLARE
        v_seq BIGINT;
        v_hash TEXT;
        v_used NUMERIC;
        v_fits BOOLEAN := TRUE;
      BEGIN
        SELECT h.seq, h.hash INTO v_seq, v_hash FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
        r_used := ARRAY[]::NUMERIC[];
        FOR i IN 1 .. COALESCE(array_length(p_keys, 1), 0) LOOP
          IF p_calendar[i] THEN
            SELECT COALESCE(SUM(e.amount), 0) INTO v_used FROM budget_entries e
              WHERE e.limit_key = p_keys[i] AND e.bucket = p_buckets[i];
          ELSE
            SELECT COALESCE(SUM(e.amount), 0) INTO v_used FROM budget_entries e
              WHERE e.limit_key = p_keys[i] AND e.at_ms > p_since[i];
          END IF;
          r_used := r_used || v_used;
          IF v_used + p_amount > p_limits[i] THEN
            v_fits := FALSE;
          END IF;
        END LOOP;
        IF NOT v_fits THEN
          RETURN;
        END IF;
        r_seq := v_seq + 1;
        r_prev := v_hash;
        r_hash := stoka_row_hash(v_hash, r_seq, p_tail);
        INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount,
                            pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash)
          VALUES (r_seq, p_payment_id, p_request_id, p_at_ms, p_client, p_route, p_method, p_url,
                  p_amount, p_pay_to, p_asset, p_network, 'reserved', NULL, NULL, NULL, r_prev, r_hash);
        UPDATE ledger_head SET seq = r_seq, hash = r_hash WHERE id = 1;
        INSERT INTO payments (payment_id, budget_state, ledger_state, amount, budgets, owner,
                              created_ms, lease_until_ms, started_ms, first_seq, last_seq)
          VALUES (p_payment_id, 'reserved', 'reserved', p_amount, p_budgets, p_owner,
                  p_at_ms, p_lease_until_ms, p_at_ms, r_seq, r_seq);
        INSERT INTO budget_entries (payment_id, limit_key, bucket, at_ms, amount)
          SELECT p_payment_id, k.key, k.bucket, p_at_ms, p_amount FROM unnest(p_keys, p_buckets) AS k(key, bucket);
      END $$;

      -- A later row and its budget step in one statement. The move is decided by the caller's
      -- table (payment-transitions.ts), passed as from → to (and whether the money is freed),
      -- applied to the state read under the lock. r_seq is null for an unknown payment.
      CREATE FUNCTION stoka_append(
        p_payment_id TEXT, p_request_id TEXT, p_at_ms BIGINT, p_client TEXT, p_route TEXT,
        p_method TEXT, p_url TEXT, p_amount NUMERIC, p_pay_to TEXT, p_asset TEXT, p_network TEXT,
        p_state TEXT, p_tx TEXT, p_upstream_status INTEGER, p_reason TEXT, p_tail TEXT,
        p_from TEXT[], p_to TEXT[], p_frees BOOLEAN[],
        OUT r_seq BIGINT, OUT r_prev TEXT, OUT r_hash TEXT)
      LANGUAGE plpgsql AS $$
      DECLARE
        v_seq BIGINT;
        v_hash TEXT;
        v_state TEXT;
        v_next TEXT;
        v_frees BOOLEAN := FALSE;
        v_i INTEGER;
      BEGIN
        SELECT h.seq, h.hash INTO v_seq, v_hash FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
        SELECT p.budget_state INTO v_state FROM payments p WHERE p.payment_id = p_payment_id;
        IF NOT FOUND THEN
          RETURN;
        END IF;
        v_next := v_state;
        v_i := array_position(p_from, v_state);
        IF v_i IS NOT NULL THEN
          v_next := p_to[v_i];
          v_frees := p_frees[v_i];
        END IF;
        r_seq := v_seq + 1;
        r_prev := v_hash;
        r_hash := stoka_row_hash(v_hash, r_seq, p_tail);
        INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount,
                            pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash)
          VALUES (r_seq, p_payment_id, p_request_id, p_at_ms, p_client, p_route, p_method, p_url,
                  p_amount, p_pay_to, p_asset, p_network, p_state, p_tx, p_upstream_status, p_reason,
                  r_prev, r_hash);
        UPDATE ledger_head SET seq = r_seq, hash = r_hash WHERE id = 1;
        UPDATE payments SET ledger_state = p_state, last_seq = r_seq,
                            started_ms = LEAST(started_ms, p_at_ms), budget_state = v_next
          WHERE payment_id = p_payment_id;
        IF v_frees THEN
          DELETE FROM budget_entries WHERE payment_id = p_payment_id;
        END IF;
      END $$;
    `,
  },
  {
    version: 2,
    name: "ledger payer (the wallet that signed)",
    sql: `
      -- The paying wallet's G-address. Rows written before keep NULL (unknown), and their hash,
      -- which never covered it: a row's hash covers the payer only when it has one
      -- (ledger/entry.ts, canonical). Adding a nullable column rewrites no row and fires no
      -- UPDATE trigger.
      ALTER TABLE ledger ADD COLUMN payer TEXT;

      -- stoka_open / stoka_append with the payer as one more, last, argument. The versions
      -- without it stay (overloads: PostgreSQL tells them apart by their argument count), so
      -- a replica not yet upgraded keeps writing, with payer NULL, during a rolling upgrade.
      CREATE FUNCTION stoka_open(
        p_payment_id TEXT, p_request_id TEXT, p_at_ms BIGINT, p_client TEXT, p_route TEXT,
        p_method TEXT, p_url TEXT, p_amount NUMERIC, p_pay_to TEXT, p_asset TEXT, p_network TEXT,
        p_tail TEXT, p_budgets TEXT[], p_owner INTEGER, p_lease_until_ms BIGINT,
        p_keys TEXT[], p_calendar BOOLEAN[], p_buckets BIGINT[], p_since BIGINT[], p_limits NUMERIC[],
        p_payer TEXT,
        OUT r_used NUMERIC[], OUT r_seq BIGINT, OUT r_prev TEXT, OUT r_hash TEXT)
      LANGUAGE plpgsql AS $$
      DECLARE
        v_seq BIGINT;
        v_hash TEXT;
        v_used NUMERIC;
        v_fits BOOLEAN := TRUE;
      BEGIN
        SELECT h.seq, h.hash INTO v_seq, v_hash FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
        r_used := ARRAY[]::NUMERIC[];
        FOR i IN 1 .. COALESCE(array_length(p_keys, 1), 0) LOOP
          IF p_calendar[i] THEN
            SELECT COALESCE(SUM(e.amount), 0) INTO v_used FROM budget_entries e
              WHERE e.limit_key = p_keys[i] AND e.bucket = p_buckets[i];
          ELSE
            SELECT COALESCE(SUM(e.amount), 0) INTO v_used FROM budget_entries e
              WHERE e.limit_key = p_keys[i] AND e.at_ms > p_since[i];
          END IF;
          r_used := r_used || v_used;
          IF v_used + p_amount > p_limits[i] THEN
            v_fits := FALSE;
          END IF;
        END LOOP;
        IF NOT v_fits THEN
          RETURN;
        END IF;
        r_seq := v_seq + 1;
        r_prev := v_hash;
        r_hash := stoka_row_hash(v_hash, r_seq, p_tail);
        INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount,
                            pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash, payer)
          VALUES (r_seq, p_payment_id, p_request_id, p_at_ms, p_client, p_route, p_method, p_url,
                  p_amount, p_pay_to, p_asset, p_network, 'reserved', NULL, NULL, NULL, r_prev, r_hash, p_payer);
        UPDATE ledger_head SET seq = r_seq, hash = r_hash WHERE id = 1;
        INSERT INTO payments (payment_id, budget_state, ledger_state, amount, budgets, owner,
                              created_ms, lease_until_ms, started_ms, first_seq, last_seq)
          VALUES (p_payment_id, 'reserved', 'reserved', p_amount, p_budgets, p_owner,
                  p_at_ms, p_lease_until_ms, p_at_ms, r_seq, r_seq);
        INSERT INTO budget_entries (payment_id, limit_key, bucket, at_ms, amount)
          SELECT p_payment_id, k.key, k.bucket, p_at_ms, p_amount FROM unnest(p_keys, p_buckets) AS k(key, bucket);
      END $$;

      CREATE FUNCTION stoka_append(
        p_payment_id TEXT, p_request_id TEXT, p_at_ms BIGINT, p_client TEXT, p_route TEXT,
        p_method TEXT, p_url TEXT, p_amount NUMERIC, p_pay_to TEXT, p_asset TEXT, p_network TEXT,
        p_state TEXT, p_tx TEXT, p_upstream_status INTEGER, p_reason TEXT, p_tail TEXT,
        p_from TEXT[], p_to TEXT[], p_frees BOOLEAN[], p_payer TEXT,
        OUT r_seq BIGINT, OUT r_prev TEXT, OUT r_hash TEXT)
      LANGUAGE plpgsql AS $$
      DECLARE
        v_seq BIGINT;
        v_hash TEXT;
        v_state TEXT;
        v_next TEXT;
        v_frees BOOLEAN := FALSE;
        v_i INTEGER;
      BEGIN
        SELECT h.seq, h.hash INTO v_seq, v_hash FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
        SELECT p.budget_state INTO v_state FROM payments p WHERE p.payment_id = p_payment_id;
        IF NOT FOUND THEN
          RETURN;
        END IF;
        v_next := v_state;
        v_i := array_position(p_from, v_state);
        IF v_i IS NOT NULL THEN
          v_next := p_to[v_i];
          v_frees := p_frees[v_i];
        END IF;
        r_seq := v_seq + 1;
        r_prev := v_hash;
        r_hash := stoka_row_hash(v_hash, r_seq, p_tail);
        INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount,
                            pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash, payer)
          VALUES (r_seq, p_payment_id, p_request_id, p_at_ms, p_client, p_route, p_method, p_url,
                  p_amount, p_pay_to, p_asset, p_network, p_state, p_tx, p_upstream_status, p_reason,
                  r_prev, r_hash, p_payer);
        UPDATE ledger_head SET seq = r_seq, hash = r_hash WHERE id = 1;
        UPDATE payments SET ledger_state = p_state, last_seq = r_seq,
                            started_ms = LEAST(started_ms, p_at_ms), budget_state = v_next
          WHERE payment_id = p_payment_id;
        IF v_frees THEN
          DELETE FROM budget_entries WHERE payment_id = p_payment_id;
        END IF;
      END $$;
    `,
  },
  {
    version: 3,
    name: "running budget totals per calendar bucket and rolling slot",
    sql: `
      -- A running total per (limit, calendar bucket), kept by a trigger on budget_entries so
      -- every writer moves it, a replica not yet upgraded included: a reservation reads one
      -- row instead of summing every entry of the month under the head lock (the sum grew with
      -- each payment). Rows written before are backfilled here, in the migration's transaction.
      -- The table is locked first, and for the whole migration: a reservation by a replica not
      -- yet upgraded committing between the backfill and the trigger would be missing from the
      -- totals for good (spend under-counted), and a lock taken step by step (the trigger's,
      -- then DROP INDEX's) deadlocks with such a reservation. Those reservations wait instead.
      LOCK TABLE budget_entries IN ACCESS EXCLUSIVE MODE;

      -- A rolling window (a key "<budget>:rolling_<seconds>s"; budget names have no colon) is
      -- totalled in slots of this length, as budget.ts rollingSlotMs computes it: a reservation
      -- adds the ~64 slots after the one holding the window's start and sums only that slot's
      -- entries. NULL for a calendar key.
      CREATE FUNCTION stoka_slot_ms(p_key TEXT) RETURNS BIGINT LANGUAGE sql IMMUTABLE STRICT AS $$
        SELECT GREATEST(1000, (w.seconds * 1000 + ${ROLLING_SLOTS - 1}) / ${ROLLING_SLOTS})
          FROM (SELECT substring(p_key from ':rolling_([0-9]+)s$')::BIGINT AS seconds) w
         WHERE w.seconds IS NOT NULL
      $$;
      -- Where an entry is totalled: its calendar bucket, or its rolling slot. Entries keep bucket 0
      -- for rolling windows, as every version writes them; only the totals are slotted.
      CREATE FUNCTION stoka_total_bucket(p_key TEXT, p_bucket BIGINT, p_at_ms BIGINT) RETURNS BIGINT
        LANGUAGE sql IMMUTABLE AS $$
          SELECT COALESCE(p_at_ms / stoka_slot_ms(p_key), p_bucket)
        $$;

      CREATE TABLE budget_totals (
        limit_key TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        amount NUMERIC(39, 0) NOT NULL,
        PRIMARY KEY (limit_key, bucket)
      );
      INSERT INTO budget_totals (limit_key, bucket, amount)
        SELECT limit_key, stoka_total_bucket(limit_key, bucket, at_ms), SUM(amount) FROM budget_entries GROUP BY 1, 2;
      CREATE FUNCTION budget_totals_follow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
          UPDATE budget_totals SET amount = amount - OLD.amount
            WHERE limit_key = OLD.limit_key AND bucket = stoka_total_bucket(OLD.limit_key, OLD.bucket, OLD.at_ms);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
          INSERT INTO budget_totals (limit_key, bucket, amount)
            VALUES (NEW.limit_key, stoka_total_bucket(NEW.limit_key, NEW.bucket, NEW.at_ms), NEW.amount)
            ON CONFLICT (limit_key, bucket) DO UPDATE SET amount = budget_totals.amount + EXCLUDED.amount;
        END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER budget_totals_follow AFTER INSERT OR UPDATE OR DELETE ON budget_entries
        FOR EACH ROW EXECUTE FUNCTION budget_totals_follow();
      -- TRUNCATE fires no row trigger: empty the totals with the entries.
      CREATE FUNCTION budget_totals_clear() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        DELETE FROM budget_totals;
        RETURN NULL;
      END $$;
      CREATE TRIGGER budget_totals_clear AFTER TRUNCATE ON budget_entries
        FOR EACH STATEMENT EXECUTE FUNCTION budget_totals_clear();
      -- Every role that may use budget_entries may use the totals the same way: the trigger
      -- runs with the rights of whoever writes the entries, replicas not yet upgraded included.
      DO $$
      DECLARE g RECORD;
      BEGIN
        FOR g IN SELECT a.grantee, a.privilege_type
                   FROM pg_class c, aclexplode(c.relacl) a
                  WHERE c.oid = 'budget_entries'::regclass AND a.grantee <> c.relowner LOOP
          EXECUTE format('GRANT %s ON budget_totals TO %s', g.privilege_type,
            CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
        END LOOP;
      END $$;

      -- Rolling windows still sum their entries, from an index that carries the amount.
      CREATE INDEX budget_entries_window ON budget_entries (limit_key, at_ms) INCLUDE (amount);
      DROP INDEX budget_entries_at;

      -- One limit's use: the bucket's total (calendar); for a rolling window, the slots after
      -- the one holding p_since plus that slot's own entries after p_since (a key that names
      -- no window is summed from its entries: never under-counted).
      CREATE FUNCTION stoka_limit_used(p_key TEXT, p_calendar BOOLEAN, p_bucket BIGINT, p_since BIGINT)
        RETURNS NUMERIC LANGUAGE sql STABLE AS $$
          SELECT CASE
            WHEN p_calendar THEN
              (SELECT COALESCE(SUM(t.amount), 0) FROM budget_totals t WHERE t.limit_key = p_key AND t.bucket = p_bucket)
            WHEN stoka_slot_ms(p_key) IS NULL THEN
              (SELECT COALESCE(SUM(e.amount), 0) FROM budget_entries e WHERE e.limit_key = p_key AND e.at_ms > p_since)
            ELSE
              (SELECT COALESCE(SUM(t.amount), 0) FROM budget_totals t
                WHERE t.limit_key = p_key AND t.bucket > p_since / stoka_slot_ms(p_key))
              + (SELECT COALESCE(SUM(e.amount), 0) FROM budget_entries e
                WHERE e.limit_key = p_key AND e.at_ms > p_since
                  AND e.at_ms < (p_since / stoka_slot_ms(p_key) + 1) * stoka_slot_ms(p_key))
          END
        $$;

      -- Both stoka_open overloads (with and without the payer) read the use through it.
      ${openFunction(false)}
      ${openFunction(true)}
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

/**
 * stoka_open (migration 3 onwards): lock the head, read every limit's use (stoka_limit_used),
 * and only if the price fits them all, write the reserved row, the payment and its budget
 * entries. `withPayer` is migration 2's overload, the payer as its last argument.
 */
function openFunction(withPayer: boolean): string {
  return `
      CREATE OR REPLACE FUNCTION stoka_open(
        p_payment_id TEXT, p_request_id TEXT, p_at_ms BIGINT, p_client TEXT, p_route TEXT,
        p_method TEXT, p_url TEXT, p_amount NUMERIC, p_pay_to TEXT, p_asset TEXT, p_network TEXT,
        p_tail TEXT, p_budgets TEXT[], p_owner INTEGER, p_lease_until_ms BIGINT,
        p_keys TEXT[], p_calendar BOOLEAN[], p_buckets BIGINT[], p_since BIGINT[], p_limits NUMERIC[],${withPayer ? "\n        p_payer TEXT," : ""}
        OUT r_used NUMERIC[], OUT r_seq BIGINT, OUT r_prev TEXT, OUT r_hash TEXT)
      LANGUAGE plpgsql AS $$
      DECLARE
        v_seq BIGINT;
        v_hash TEXT;
        v_used NUMERIC;
        v_fits BOOLEAN := TRUE;
      BEGIN
        SELECT h.seq, h.hash INTO v_seq, v_hash FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
        r_used := ARRAY[]::NUMERIC[];
        FOR i IN 1 .. COALESCE(array_length(p_keys, 1), 0) LOOP
          v_used := stoka_limit_used(p_keys[i], p_calendar[i], p_buckets[i], p_since[i]);
          r_used := r_used || v_used;
          IF v_used + p_amount > p_limits[i] THEN
            v_fits := FALSE;
          END IF;
        END LOOP;
        IF NOT v_fits THEN
          RETURN;
        END IF;
        r_seq := v_seq + 1;
        r_prev := v_hash;
        r_hash := stoka_row_hash(v_hash, r_seq, p_tail);
        INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount,
                            pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash${withPayer ? ", payer" : ""})
          VALUES (r_seq, p_payment_id, p_request_id, p_at_ms, p_client, p_route, p_method, p_url,
                  p_amount, p_pay_to, p_asset, p_network, 'reserved', NULL, NULL, NULL, r_prev, r_hash${withPayer ? ", p_payer" : ""});
        UPDATE ledger_head SET seq = r_seq, hash = r_hash WHERE id = 1;
        INSERT INTO payments (payment_id, budget_state, ledger_state, amount, budgets, owner,
                              created_ms, lease_until_ms, started_ms, first_seq, last_seq)
          VALUES (p_payment_id, 'reserved', 'reserved', p_amount, p_budgets, p_owner,
                  p_at_ms, p_lease_until_ms, p_at_ms, r_seq, r_seq);
        INSERT INTO budget_entries (payment_id, limit_key, bucket, at_ms, amount)
          SELECT p_payment_id, k.key, k.bucket, p_at_ms, p_amount FROM unnest(p_keys, p_buckets) AS k(key, bucket);
      END $$;`;
}
