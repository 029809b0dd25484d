import { LedgerClock } from "../stellar/ledger-clock.js";
import type { NetworkInfo } from "../stellar/networks.js";

/**
 * The emulated slice of a Stellar network that the fake RPC and the emulator share: the ledger
 * sequence, USDC balances and the auth nonces already consumed (a nonce is single use on chain).
 */
export class SandboxChain {
  readonly clock: LedgerClock;
  private readonly balances = new Map<string, bigint>();
  private readonly usedNonces = new Set<string>();

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

  /** Moves USDC; false (and nothing moves) when `from` cannot cover it. */
  transfer(from: string, to: string, amount: bigint): boolean {
    const have = this.balanceOf(from);
    if (have < amount) return false;
    this.balances.set(from, have - amount);
    this.balances.set(to, this.balanceOf(to) + amount);
    return true;
  }
}
