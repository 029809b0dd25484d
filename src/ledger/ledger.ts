import { redactUrl } from "../secrets/redact.js";
import { statement } from "../storage/sqlite.js";
import type { Db } from "../storage/sqlite.js";
import { GENESIS_HASH, rowHash, verifyChain } from "./entry.js";
import type { ChainCheck, LedgerFields, LedgerRow, PaymentState } from "./entry.js";

/** A payment's latest row plus when it started (days are counted by the start) and its first row. */
export type PaymentSummary = LedgerRow & { startedAtMs: number; firstSeq: number };

/**
 * The append-only money ledger in SQLite. Appends are transactions that also move the head
 * (last seq and hash), so `verify` can tell a removed tail row from a short ledger. Rows are
 * written before money can move (`reserved`, `sent`) and when the outcome is known.
 */
export class Ledger {
  constructor(private readonly db: Db) {
    db.exec(`
      CREATE TABLE IF NOT EXISTS ledger (
        seq INTEGER PRIMARY KEY,
        payment_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        client TEXT NOT NULL,
        route TEXT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        amount INTEGER NOT NULL,
        pay_to TEXT NOT NULL,
        asset TEXT NOT NULL,
        network TEXT NOT NULL,
        state TEXT NOT NULL,
        tx TEXT,
        upstream_status INTEGER,
        reason TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS ledger_payment ON ledger(payment_id);
      CREATE INDEX IF NOT EXISTS ledger_at ON ledger(at_ms);
      CREATE TABLE IF NOT EXISTS ledger_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
    `);
    addPayerColumn(db);
  }

  append(given: LedgerFields): LedgerRow {
    // The app's URL is kept without secrets (`?api_key=REDACTED`): the ledger is exported and
    // handed around, and a row can never be edited afterwards. The hash covers what is stored.
    const fields: LedgerFields = { ...given, url: redactUrl(given.url) };
    return this.db
      .transaction((): LedgerRow => {
        const head = this.head();
        const seq = (head?.seq ?? 0) + 1;
        const prevHash = head?.hash ?? GENESIS_HASH;
        const hash = rowHash(prevHash, seq, fields);
        statement(
          this.db,
          `INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount, pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash, payer)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          seq,
          fields.paymentId,
          fields.requestId,
          fields.atMs,
          fields.client,
          fields.route,
          fields.method,
          fields.url,
          fields.amount,
          fields.payTo,
          fields.asset,
          fields.network,
          fields.state,
          fields.tx,
          fields.upstreamStatus,
          fields.reason,
          prevHash,
          hash,
          fields.payer ?? null,
        );
        statement(
          this.db,
          "INSERT INTO ledger_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        ).run(seq, hash);
        return { ...fields, seq, prevHash, hash };
      })
      .immediate();
  }

  head(): { seq: number; hash: string } | null {
    return (
      (statement(this.db, "SELECT seq, hash FROM ledger_head WHERE id = 1").get() as
        { seq: number; hash: string } | undefined) ?? null
    );
  }

  *rows(sinceMs = 0): Generator<LedgerRow> {
    const stmt = this.db.prepare("SELECT * FROM ledger WHERE at_ms >= ? ORDER BY seq").safeIntegers();
    for (const raw of stmt.iterate(sinceMs) as Iterable<Record<string, unknown>>) yield fromDb(raw);
  }

  verify(): ChainCheck {
    return verifyChain(this.rows(), this.head());
  }

  /** The latest row of every payment, with when the payment started (its first row). */
  latest(): PaymentSummary[] {
    const stmt = this.db
      .prepare(
        "SELECT l.*, x.started AS started_ms, x.first AS first_seq FROM ledger l JOIN (SELECT payment_id, MAX(seq) AS m, MIN(seq) AS first, MIN(at_ms) AS started FROM ledger GROUP BY payment_id) x ON l.seq = x.m ORDER BY l.seq",
      )
      .safeIntegers();
    return (stmt.all() as Record<string, unknown>[]).map((r) => ({
      ...fromDb(r),
      startedAtMs: Number(r.started_ms),
      firstSeq: Number(r.first_seq),
    }));
  }

  /** A payment's first row (its fixed facts), or undefined when it was never opened. */
  firstOf(paymentId: string): LedgerRow | undefined {
    return this.one("SELECT * FROM ledger WHERE payment_id = ? ORDER BY seq LIMIT 1", paymentId);
  }

  /** A payment's latest row (its current state). */
  latestOf(paymentId: string): LedgerRow | undefined {
    return this.one("SELECT * FROM ledger WHERE payment_id = ? ORDER BY seq DESC LIMIT 1", paymentId);
  }

  private one(sql: string, paymentId: string): LedgerRow | undefined {
    const raw = statement(this.db, sql, true).get(paymentId) as Record<string, unknown> | undefined;
    return raw ? fromDb(raw) : undefined;
  }

  /** Payments whose latest state is one of `states`. */
  inState(...states: PaymentState[]): PaymentSummary[] {
    return this.latest().filter((r) => states.includes(r.state));
  }
}

/**
 * The `payer` column, added to ledgers made before it existed: their rows keep payer NULL
 * (unknown) and their hashes, which never covered it (entry.ts, canonical). Additive, so an
 * older stoka-proxy (which names its columns) can still append to the file.
 */
function addPayerColumn(db: Db): void {
  const columns = db.prepare("PRAGMA table_info(ledger)").all() as { name: string }[];
  if (!columns.some((c) => c.name === "payer")) db.exec("ALTER TABLE ledger ADD COLUMN payer TEXT");
}

export function fromDb(r: Record<string, unknown>): LedgerRow {
  const num = (v: unknown) => (v === null ? null : Number(v));
  return {
    seq: Number(r.seq),
    paymentId: String(r.payment_id),
    requestId: String(r.request_id),
    atMs: Number(r.at_ms),
    client: String(r.client),
    route: String(r.route),
    method: String(r.method),
    url: String(r.url),
    amount: BigInt(r.amount as bigint),
    payTo: String(r.pay_to),
    asset: String(r.asset),
    network: String(r.network),
    state: String(r.state) as PaymentState,
    tx: r.tx === null ? null : String(r.tx),
    upstreamStatus: num(r.upstream_status),
    reason: r.reason === null ? null : String(r.reason),
    payer: r.payer === null || r.payer === undefined ? null : String(r.payer),
    prevHash: String(r.prev_hash),
    hash: String(r.hash),
  };
}
