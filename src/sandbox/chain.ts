import { LedgerClock } from "../stellar/ledger-clock.js";
import type { NetworkInfo } from "../stellar/networks.js";

/**
 * The emulated slice of a Stellar network that the fake RPC and the emulator share: the ledger
 * sequence, USDC balances, the auth nonces already consumed (a nonce is single use on chain) and
 * the classic accounts that submit transactions.
 */
export class SandboxChain {
  readonly clock: LedgerClock;
  private readonly balances = new Map<string, bigint>();
  private readonly usedNonces = new Set<string>();
  /** Classic accounts that may be a transaction source (e.g. a facilitator): sequence numbers. */
  private readonly accounts = new Map<string, bigint>();

  constructor(
    readonly info: NetworkInfo,
    now: () => number = Date.now,
  ) {
    this.clock = new LedgerClock(now);
  }

  fund(address: string, amount: bigint): void {
    this.balances.set(address, this.balanceOf(address) + amount);
  }

  balanceOf(address: string): bigint {
    return this.balances.get(address) ?? 0n;
  }

  isNonceUsed(address: string, nonce: string): boolean {
    return this.usedNonces.has(`${address}/${nonce}`);
  }

  /** Marks a nonce used; false if it already was (a replay). */
  consumeNonce(address: string, nonce: string): boolean {
    const key = `${address}/${nonce}`;
    if (this.usedNonces.has(key)) return false;
    this.usedNonces.add(key);
    return true;
  }

  /** Creates a classic account, so it can be the source of a submitted transaction. */
  openAccount(address: string): void {
    if (!this.accounts.has(address)) this.accounts.set(address, BigInt(this.clock.current()) << 32n);
  }

  /** The account's current sequence number, or undefined when it does not exist. */
  accountSequence(address: string): bigint | undefined {
    return this.accounts.get(address);
  }

  /** Consumes `sequence` if it is exactly the account's next one (as the network does). */
  useSequence(address: string, sequence: bigint): boolean {
    const current = this.accounts.get(address);
    if (current === undefined || sequence !== current + 1n) return false;
    this.accounts.set(address, sequence);
    return true;
  }

  /** Moves USDC; false (and nothing moves) when `from` cannot cover it. */
  transfer(from: string, to: string, amount: bigint): boolean {
    const have = this.balanceOf(from);
    if (have < amount) return false;
    this.balances.set(from, have - amount);
    this.balances.set(to, this.balanceOf(to) + amount);
    return true;
  }
}
