import type { Challenge } from "../x402/challenge.js";
import { readRequirement } from "../x402/challenge.js";

/**
 * Quote-ahead's arithmetic (docs/wire-protocol.md, Pricing; docs/configuration.md, Quote-ahead):
 * the price stoka will ask for a store, update or retrieve, from the manifest's `pricing`, and
 * the challenge the proxy pays ahead with: the last 402 seen for that route (a template), with
 * the price, the resource URL and stoka's description rewritten for this request. Pure.
 */
export interface StokaPricing {
  store: { base: number; per_kib: number; per_kib_per_day: number };
  update: { base: number; per_kib: number; per_kib_per_day: number };
  retrieve: { base: number; per_kib: number };
  ttl: { default_seconds: number; min_seconds: number; max_seconds: number };
}

const DAY_SECONDS = 86_400;
const whole = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** The manifest's `pricing`, or null unless every number quote-ahead needs is a whole number. */
export function readPricing(manifest: unknown): StokaPricing | null {
  const p = (manifest as { pricing?: unknown } | null)?.pricing as
    Record<string, Record<string, unknown>> | undefined;
  if (typeof p !== "object" || p === null) return null;
  const pick = (section: string, keys: string[]) => {
    const s = p[section];
    if (typeof s !== "object" || s === null) return null;
    const out: Record<string, number> = {};
    for (const k of keys) {
      if (!whole(s[k])) return null;
      out[k] = s[k];
    }
    return out;
  };
  const write = ["base", "per_kib", "per_kib_per_day"];
  const store = pick("store", write);
  const update = pick("update", write);
  const retrieve = pick("retrieve", ["base", "per_kib"]);
  const ttl = pick("ttl", ["default_seconds", "min_seconds", "max_seconds"]);
  if (!store || !update || !retrieve || !ttl) return null;
  return { store, update, retrieve, ttl } as unknown as StokaPricing;
}

export type QuotedRoute = "store" | "update" | "retrieve";
export const QUOTED_ROUTES: readonly QuotedRoute[] = ["store", "update", "retrieve"];

/** What the price depends on: the body (store/update) and TTL header, or the object's size (retrieve). */
export interface QuoteInput {
  route: QuotedRoute;
  /** store/update: the body's bytes; retrieve: the size remembered for the object. */
  bytes: number;
  /** X-Stoka-TTL-Seconds as sent, or undefined. */
  ttlHeader?: string;
}

/** The price and stoka's description for it, or null when the input cannot be priced exactly. */
export function quotePrice(p: StokaPricing, q: QuoteInput): { price: bigint; description: string } | null {
  const kib = BigInt(Math.ceil(q.bytes / 1024));
  if (q.route === "retrieve")
    return {
      price: BigInt(p.retrieve.base) + BigInt(p.retrieve.per_kib) * kib,
      description: `retrieve ${q.bytes} bytes`,
    };
  let asked = p.ttl.default_seconds;
  if (q.ttlHeader !== undefined) {
    // Only a plain whole number is priced ahead; anything stoka might read differently is not.
    if (!/^[0-9]{1,12}$/.test(q.ttlHeader)) return null;
    asked = Number(q.ttlHeader);
  }
  const days = Math.ceil(Math.min(Math.max(asked, p.ttl.min_seconds), p.ttl.max_seconds) / DAY_SECONDS);
  const s = p[q.route];
  return {
    price: BigInt(s.base) + kib * (BigInt(s.per_kib) + BigInt(days) * BigInt(s.per_kib_per_day)),
    description:
      q.route === "store"
        ? `store ${q.bytes} bytes for ${days} days`
        : `update to ${q.bytes} bytes for ${days} days`,
  };
}

/** stoka's descriptions (the emulator's and the service's): rewritten only when the template has one. */
const DESCRIPTION =
  /^(store [0-9]+ bytes for [0-9]+ days|update to [0-9]+ bytes for [0-9]+ days|retrieve [0-9]+ bytes)$/;

/**
 * The template's chosen requirement (and only it) with this request's price, resource URL and
 * description; the rest verbatim, so it is what stoka would have issued. Null when the template
 * does not look like stoka's (then the request takes the normal path).
 */
export function quotedChallenge(
  template: Challenge,
  chosen: Readonly<Record<string, unknown>>,
  url: string,
  quote: { price: bigint; description: string },
): Challenge | null {
  const raw: Record<string, unknown> = { ...chosen };
  const price = quote.price.toString();
  if ("amount" in raw) raw.amount = price;
  if ("maxAmountRequired" in raw) raw.maxAmountRequired = price;
  if (typeof raw.resource === "string") raw.resource = url;
  if (typeof raw.description === "string") {
    if (!DESCRIPTION.test(raw.description)) return null;
    raw.description = quote.description;
  }
  const requirement = readRequirement(raw);
  if (!requirement) return null;
  const challenge: Challenge = { ...template, accepts: [requirement] };
  delete challenge.error;
  if (template.resource !== undefined) {
    const r = template.resource as Record<string, unknown> | null;
    if (typeof r !== "object" || r === null || typeof r.url !== "string") return null;
    const resource: Record<string, unknown> = { ...r, url };
    if (typeof r.description === "string") {
      if (!DESCRIPTION.test(r.description)) return null;
      resource.description = quote.description;
    }
    challenge.resource = resource;
  }
  return challenge;
}
