/**
 * stoka's pricing and TTL rules (docs/wire-protocol.md, Pricing). Pure: the
 * emulator quotes from these, and the manifest publishes the same numbers.
 */
export interface Pricing {
  store: { base: number; per_kib: number; per_kib_per_day: number };
  update: { base: number; per_kib: number; per_kib_per_day: number };
  retrieve: { base: number; per_kib: number };
  ttl: { default_seconds: number; min_seconds: number; max_seconds: number };
}

export const DAY_SECONDS = 86_400;

export function defaultPricing(maxTtlSeconds = 90 * DAY_SECONDS): Pricing {
  return {
    store: { base: 1000, per_kib: 100, per_kib_per_day: 10 },
    update: { base: 1000, per_kib: 100, per_kib_per_day: 10 },
    retrieve: { base: 1000, per_kib: 100 },
    ttl: { default_seconds: 30 * DAY_SECONDS, min_seconds: 3600, max_seconds: maxTtlSeconds },
  };
}

function kib(bytes: number): bigint {
  return BigInt(Math.ceil(bytes / 1024));
}

/** TTL: default 30 days, clamped to [min, max]; billed in whole days, rounded up. */
export function resolveTtl(
  requestedSeconds: number | undefined,
  ttl: Pricing["ttl"],
): { seconds: number; days: number } {
  const asked = requestedSeconds ?? ttl.default_seconds;
  const seconds = Math.min(Math.max(asked, ttl.min_seconds), ttl.max_seconds);
  return { seconds, days: Math.ceil(seconds / DAY_SECONDS) };
}

/** store / update: base + ceil(bytes/1024) × (per_kib + ttl_days × per_kib_per_day). */
export function writePrice(bytes: number, ttlDays: number, p: Pricing["store"]): bigint {
  return BigInt(p.base) + kib(bytes) * (BigInt(p.per_kib) + BigInt(ttlDays) * BigInt(p.per_kib_per_day));
}

/** retrieve (and, by this project's decision, queue push/pop): base + per_kib × ceil(bytes/1024). */
export function readPrice(bytes: number, p: Pricing["retrieve"]): bigint {
  return BigInt(p.base) + BigInt(p.per_kib) * kib(bytes);
}
