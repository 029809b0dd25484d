import { createHash } from "node:crypto";
import { redactUrl } from "../secrets/redact.js";

/**
 * One row of the money ledger (docs/operations.md, The ledger): every state change of every payment attempt is
 * appended, never updated. Rows are hash-chained: each row's hash covers its fields and the
 * previous row's hash, so an edited or removed row breaks the chain. Pure.
 */
export type PaymentState = "reserved" | "sent" | "settled" | "rejected" | "indeterminate" | "failed";

export interface LedgerFields {
  paymentId: string;
  requestId: string;
  atMs: number;
  client: string;
  route: string;
  method: string;
  url: string;
  amount: bigint;
  payTo: string;
  asset: string;
  network: string;
  state: PaymentState;
  tx: string | null;
  upstreamStatus: number | null;
  reason: string | null;
  /**
   * The G-address of the wallet that signed the payment; null (or absent) for rows written
   * before the ledger recorded it, and when the signer does not say (a payment command
   * without `wallet.address`). One of the payment's fixed facts, the same in all its rows.
   */
  payer?: string | null;
}

export interface LedgerRow extends LedgerFields {
  seq: number;
  prevHash: string;
  hash: string;
}

export const GENESIS_HASH = "0".repeat(64);

/**
 * The canonical text a row's hash covers: fixed field order, amount as a decimal string.
 * Versioned by length: a row without a payer is hashed exactly as before the ledger had the
 * field (so ledgers written by earlier versions still verify); a row with one appends it as a
 * 17th element. Removing the payer from such a row, or adding one to an old row, breaks its hash.
 */
export function canonical(seq: number, f: LedgerFields): string {
  const fields: (string | number | null)[] = [
    seq,
    f.paymentId,
    f.requestId,
    f.atMs,
    f.client,
    f.route,
    f.method,
    f.url,
    f.amount.toString(),
    f.payTo,
    f.asset,
    f.network,
    f.state,
    f.tx,
    f.upstreamStatus,
    f.reason,
  ];
  if (typeof f.payer === "string") fields.push(f.payer);
  return JSON.stringify(fields);
}

export function rowHash(prevHash: string, seq: number, f: LedgerFields): string {
  return createHash("sha256").update(prevHash).update("\n").update(canonical(seq, f)).digest("hex");
}

export type ChainCheck =
  { ok: true; rows: number; headHash: string } | { ok: false; rows: number; seq: number; reason: string };

/** Walks the chain in order; `head` is the last (seq, hash) the ledger recorded separately. */
export function verifyChain(
  rows: Iterable<LedgerRow>,
  head: { seq: number; hash: string } | null,
): ChainCheck {
  let prev = GENESIS_HASH;
  let expectedSeq = 1;
  let count = 0;
  for (const row of rows) {
    if (row.seq !== expectedSeq)
      return { ok: false, rows: count, seq: expectedSeq, reason: `row ${expectedSeq} is missing` };
    if (row.prevHash !== prev)
      return {
        ok: false,
        rows: count,
        seq: row.seq,
        reason: `row ${row.seq} does not follow row ${row.seq - 1}`,
      };
    if (rowHash(prev, row.seq, row) !== row.hash)
      return { ok: false, rows: count, seq: row.seq, reason: `row ${row.seq} was edited` };
    prev = row.hash;
    expectedSeq += 1;
    count += 1;
  }
  if (head && (head.seq !== count || head.hash !== prev)) {
    return {
      ok: false,
      rows: count,
      seq: count + 1,
      reason: `the ledger ends at row ${count} but its head says row ${head.seq}: rows were removed`,
    };
  }
  return { ok: true, rows: count, headHash: prev };
}

/**
 * NDJSON / CSV export rows (amount as a string: never a float). The URL is redacted again on
 * the way out: rows written before URLs were redacted at append time keep their text (and
 * hash) in the database, but their secrets do not leave it.
 */
export function toExportObject(r: LedgerRow): Record<string, string | number | null> {
  return {
    seq: r.seq,
    id: r.paymentId,
    request_id: r.requestId,
    at: new Date(r.atMs).toISOString(),
    client: r.client,
    route: r.route,
    method: r.method,
    url: redactUrl(r.url),
    amount: r.amount.toString(),
    pay_to: r.payTo,
    payer: r.payer ?? null,
    asset: r.asset,
    network: r.network,
    state: r.state,
    tx: r.tx,
    upstream_status: r.upstreamStatus,
    reason: r.reason,
    prev_hash: r.prevHash,
    hash: r.hash,
  };
}

export const CSV_COLUMNS = Object.keys(
  toExportObject({
    seq: 0,
    paymentId: "",
    requestId: "",
    atMs: 0,
    client: "",
    route: "",
    method: "",
    url: "",
    amount: 0n,
    payTo: "",
    asset: "",
    network: "",
    state: "reserved",
    tx: null,
    upstreamStatus: null,
    reason: null,
    prevHash: "",
    hash: "",
  }),
);

/** RFC 4180 quoting. */
export function csvLine(values: (string | number | null)[]): string {
  return values
    .map((v) => {
      const s = v === null ? "" : String(v);
      return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    })
    .join(",");
}

/** Parses one CSV line written by csvLine (for round-trip checks). */
export function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}
