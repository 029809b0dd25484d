import type { PaidHost } from "../config/config.js";
import type { ManifestX402, StokaClient } from "../stoka/client.js";

/**
 * The payees a paid host may be paid: configured, or learned once from its manifest
 * (`x402.pay_to`, docs/wire-protocol.md, The manifest). A manifest for another network or
 * asset teaches nothing. Failures are not cached, successes for ten minutes.
 */
const TTL_MS = 10 * 60_000;

export class PayeeRegistry {
  private readonly learned = new Map<string, { payTo: string[]; untilMs: number }>();

  constructor(
    private readonly stoka: StokaClient,
    private readonly expect: { network: string; asset: string },
  ) {}

  async allowed(host: PaidHost): Promise<string[]> {
    if (host.payTo.length > 0) return host.payTo;
    const key = host.upstream.origin;
    const cached = this.learned.get(key);
    if (cached && cached.untilMs > Date.now()) return cached.payTo;
    const payTo = manifestPayees(await this.stoka.manifest(host.upstream), this.expect);
    if (payTo.length > 0) this.learned.set(key, { payTo, untilMs: Date.now() + TTL_MS });
    return payTo;
  }
}

/** The payee a manifest names for this network and asset, if any. Pure. */
export function manifestPayees(x: ManifestX402 | null, expect: { network: string; asset: string }): string[] {
  if (!x || x.network !== expect.network || x.asset !== expect.asset) return [];
  return typeof x.pay_to === "string" && /^G[A-Z2-7]{55}$/.test(x.pay_to) ? [x.pay_to] : [];
}
