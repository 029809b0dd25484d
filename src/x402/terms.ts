import { requirementPrice } from "./payment-header.js";
import type { PaymentRequirement } from "./payment-header.js";

/**
 * Pinned terms, checked before anything is signed (docs/wire-protocol.md, Pinned terms): scheme, network, asset, payee,
 * timeout bounds and sponsored fees. Pure.
 */
export interface PinnedTerms {
  network: string;
  asset: string;
  /** Allowed payees (configured, or learned from the upstream's manifest). */
  payTo: readonly string[];
  minTimeoutSeconds: number;
  maxTimeoutSeconds: number;
}

export type Selection =
  { ok: true; requirement: PaymentRequirement; price: bigint } | { ok: false; reason: string };

/** Why one requirement fails the terms, or null when it passes. */
export function termViolation(req: PaymentRequirement, terms: PinnedTerms): string | null {
  if (req.scheme !== "exact") return `scheme ${req.scheme} is not "exact"`;
  if (req.network !== terms.network) return `network ${req.network} is not the configured ${terms.network}`;
  if (req.asset !== terms.asset)
    return `asset ${req.asset} is not the configured USDC contract ${terms.asset}`;
  if (!terms.payTo.includes(req.payTo)) return `payee ${req.payTo} is not an allowed payTo`;
  if (req.maxTimeoutSeconds < terms.minTimeoutSeconds || req.maxTimeoutSeconds > terms.maxTimeoutSeconds) {
    return `maxTimeoutSeconds ${req.maxTimeoutSeconds} is outside [${terms.minTimeoutSeconds}, ${terms.maxTimeoutSeconds}]`;
  }
  if (req.extra?.areFeesSponsored !== true)
    return "fees are not sponsored (extra.areFeesSponsored is not true)";
  const price = requirementPrice(req);
  if (price === undefined || !/^[0-9]+$/.test(price) || BigInt(price) <= 0n)
    return `price ${String(price)} is not a positive integer`;
  return null;
}

/** The first requirement that passes every pinned term; otherwise every reason. */
export function selectRequirement(accepts: readonly PaymentRequirement[], terms: PinnedTerms): Selection {
  const reasons: string[] = [];
  for (const req of accepts) {
    const why = termViolation(req, terms);
    if (why === null) return { ok: true, requirement: req, price: BigInt(requirementPrice(req) as string) };
    reasons.push(why);
  }
  return { ok: false, reason: reasons.join("; ") || "the 402 offers no requirement" };
}
