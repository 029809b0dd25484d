import { GENESIS_HASH, rowHash } from "../ledger/entry.js";
import type { ChainCheck, LedgerRow } from "../ledger/entry.js";

/**
 * verifyChain (ledger/entry.ts) one row at a time, for a ledger read in pages from a network
 * database: the same checks in the same order with the same reasons, without holding every
 * row in memory. A property test keeps the two in agreement. Pure.
 */
export class ChainWalk {
  private prev = GENESIS_HASH;
  private expectedSeq = 1;
  private count = 0;
  private failure: ChainCheck | null = null;

  /** Takes the next row; returns the failure once the chain is broken (later rows are ignored). */
  push(row: LedgerRow): ChainCheck | null {
    if (this.failure) return this.failure;
    if (row.seq !== this.expectedSeq)
      return this.fail(this.expectedSeq, `row ${this.expectedSeq} is missing`);
    if (row.prevHash !== this.prev)
      return this.fail(row.seq, `row ${row.seq} does not follow row ${row.seq - 1}`);
    if (rowHash(this.prev, row.seq, row) !== row.hash) return this.fail(row.seq, `row ${row.seq} was edited`);
    this.prev = row.hash;
    this.expectedSeq += 1;
    this.count += 1;
    return null;
  }

  /** The verdict once every row was pushed; `head` is the separately kept last (seq, hash). */
  finish(head: { seq: number; hash: string } | null): ChainCheck {
    if (this.failure) return this.failure;
    if (head && (head.seq !== this.count || head.hash !== this.prev)) {
      return {
        ok: false,
        rows: this.count,
        seq: this.count + 1,
        reason: `the ledger ends at row ${this.count} but its head says row ${head.seq}: rows were removed`,
      };
    }
    return { ok: true, rows: this.count, headHash: this.prev };
  }

  private fail(seq: number, reason: string): ChainCheck {
    this.failure = { ok: false, rows: this.count, seq, reason };
    return this.failure;
  }
}
