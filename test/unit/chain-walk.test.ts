import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GENESIS_HASH, rowHash, verifyChain } from "../../src/ledger/entry.js";
import type { LedgerFields, LedgerRow, PaymentState } from "../../src/ledger/entry.js";
import { ChainWalk } from "../../src/store/chain-walk.js";

/** The paged verifier says exactly what verifyChain says, for intact and tampered ledgers. */
const STATES: PaymentState[] = ["reserved", "sent", "settled", "rejected", "indeterminate", "failed"];

function chain(n: number): LedgerRow[] {
  const rows: LedgerRow[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const f: LedgerFields = {
      paymentId: `p${seq % 3}`,
      requestId: `r${seq}`,
      atMs: 1_700_000_000_000 + seq,
      client: "c",
      route: "store",
      method: "POST",
      url: "http://x/",
      amount: BigInt(seq * 1000),
      payTo: "G",
      asset: "USDC",
      network: "n",
      state: STATES[seq % STATES.length] as PaymentState,
      tx: seq % 2 ? `tx${seq}` : null,
      upstreamStatus: seq % 2 ? 200 : null,
      reason: null,
    };
    const hash = rowHash(prev, seq, f);
    rows.push({ ...f, seq, prevHash: prev, hash });
    prev = hash;
  }
  return rows;
}

function walk(rows: LedgerRow[], head: { seq: number; hash: string } | null) {
  const w = new ChainWalk();
  for (const r of rows) if (w.push(r)) break;
  return w.finish(head);
}

const tamper = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.record({ kind: fc.constant("edit" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("remove" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("swap" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("truncate" as const), by: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant("rehash" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("nohead" as const) }),
);

describe("ChainWalk", () => {
  it("agrees with verifyChain on every ledger and every tampering", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), tamper, (n, t) => {
        const rows = chain(n);
        const last = rows[rows.length - 1];
        let head: { seq: number; hash: string } | null = last ? { seq: last.seq, hash: last.hash } : null;
        const i = "at" in t && n > 0 ? t.at % n : 0;
        if (n > 0 && t.kind === "edit") rows[i] = { ...(rows[i] as LedgerRow), amount: 1n };
        if (n > 0 && t.kind === "remove") rows.splice(i, 1);
        if (n > 1 && t.kind === "swap") {
          const j = (i + 1) % n;
          [rows[i], rows[j]] = [rows[j] as LedgerRow, rows[i] as LedgerRow];
        }
        if (t.kind === "truncate") rows.splice(Math.max(0, n - t.by));
        if (n > 0 && t.kind === "rehash") {
          // Edited and re-hashed: the next row no longer follows it.
          const r = { ...(rows[i] as LedgerRow), amount: 7n };
          rows[i] = { ...r, hash: rowHash(r.prevHash, r.seq, r) };
        }
        if (t.kind === "nohead") head = null;
        expect(walk(rows, head)).toEqual(verifyChain(rows, head));
      }),
      { numRuns: 400 },
    );
  });
});
