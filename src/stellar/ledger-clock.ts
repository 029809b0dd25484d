/**
 * A ledger sequence that advances one ledger per `closeSeconds` of (injectable) wall time, as
 * the fake RPC and the emulator both need the same "current ledger".
 */
export class LedgerClock {
  private readonly startMs: number;
  private offset = 0;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly genesis = 1_000_000,
    readonly closeSeconds = 5,
  ) {
    this.startMs = now();
  }

  current(): number {
    return this.genesis + this.offset + Math.floor((this.now() - this.startMs) / (this.closeSeconds * 1000));
  }

  /** Moves the chain forward, e.g. to expire a signed authorization in a test. */
  advance(ledgers: number): void {
    this.offset += ledgers;
  }
}
