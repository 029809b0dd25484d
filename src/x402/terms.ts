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

/** Which pinned term a requirement broke, and what it offered instead (public values only). */
export type TermName = "scheme" | "network" | "asset" | "pay_to" | "timeout" | "fees" | "price";

export interface TermViolation {
  term: TermName;
  /** What the requirement asked for, cut to 100 characters (it comes from the upstream). */
  offered: string;
  reason: string;
}

export type Selection =
  | { ok: true; requirement: PaymentRequirement; price: bigint }
  | { ok: false; reason: string; violations: TermViolation[] };

const offered = (v: unknown) => String(v).slice(0, 100);

/** The first pinned term one requirement breaks, or null when it passes. */
export function termViolationOf(req: PaymentRequirement, terms: PinnedTerms): TermViolation | null {
  const v = (term: TermName, value: unknown, reason: string): TermViolation => ({
    term,
    offered: offered(value),
    reason,
  });
  if (req.scheme !== "exact") return v("scheme", req.scheme, `scheme ${req.scheme} is not "exact"`);
  if (req.network !== terms.network)
    return v("network", req.network, `network ${req.network} is not the configured ${terms.network}`);
  if (req.asset !== terms.asset)
    return v("asset", req.asset, `asset ${req.asset} is not the configured USDC contract ${terms.asset}`);
  if (!terms.payTo.includes(req.payTo))
    return v("pay_to", req.payTo, `payee ${req.payTo} is not an allowed payTo`);
  if (req.maxTimeoutSeconds < terms.minTimeoutSeconds || req.maxTimeoutSeconds > terms.maxTimeoutSeconds) {
    return v(
      "timeout",
      req.maxTimeoutSeconds,
      `maxTimeoutSeconds ${req.maxTimeoutSeconds} is outside [${terms.minTimeoutSeconds}, ${terms.maxTimeoutSeconds}]`,
    );
  }
  if (req.extra?.areFeesSponsored !== true)
    return v(
      "fees",
      req.extra?.areFeesSponsored,
      "fees are not sponsored (extra.areFeesSponsored is not true)",
    );
  const price = requirementPrice(req);
  if (price === undefined || !/^[0-9]+$/.test(price) || BigInt(price) <= 0n)
    return v("price", price, `price ${String(price)} is not a positive integer`);
  return null;
}

/** Why one requirement fails the terms, or null when it passes. */
export function termViolation(req: PaymentRequirement, terms: PinnedTerms): string | null {
  return termViolationOf(req, terms)?.reason ?? null;
}

/** The first requirement that passes every pinned term; otherwise every reason. */
export function selectRequirement(accepts: readonly PaymentRequirement[], terms: PinnedTerms): Selection {
  const violations: TermViolation[] = [];
  for (const req of accepts) {
    const why = termViolationOf(req, terms);
    if (why === null) return { ok: true, requirement: req, price: BigInt(requirementPrice(req) as string) };
    violations.push(why);
  }
  return {
    ok: false,
    reason: violations.map((x) => x.reason).join("; ") || "the 402 offers no requirement",
    violations,
  };
}
