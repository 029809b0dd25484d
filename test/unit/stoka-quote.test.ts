import { describe, expect, it } from "vitest";
import { defaultPricing, readPrice, resolveTtl, writePrice } from "../../src/sandbox/pricing.js";
import { quotePrice, quotedChallenge, readPricing } from "../../src/stoka/quote.js";
import type { Challenge } from "../../src/x402/challenge.js";
import { readRequirement } from "../../src/x402/challenge.js";

/** Quote-ahead's pricing (src/stoka/quote.ts) against the emulator's own rules, in tables. */
const pricing = readPricing({ pricing: { unit: "usdc_atomic", decimals: 7, ...defaultPricing() } });

describe("quotePrice", () => {
  it.each([
    // route, bytes, TTL header, price (docs/wire-protocol.md worked values), description
    ["store", 42, undefined, 1400n, "store 42 bytes for 30 days"],
    ["store", 1025, undefined, 1800n, "store 1025 bytes for 30 days"],
    ["store", 1024 * 1024, undefined, 410_600n, "store 1048576 bytes for 30 days"],
    ["store", 42, "60", 1110n, "store 42 bytes for 1 days"], // clamped up to 1 hour, one day
    ["store", 42, "99999999", 2000n, "store 42 bytes for 90 days"], // clamped to 90 days
    ["update", 2048, "172800", 1240n, "update to 2048 bytes for 2 days"],
    ["retrieve", 42, undefined, 1100n, "retrieve 42 bytes"],
    ["retrieve", 10 * 1024, undefined, 2000n, "retrieve 10240 bytes"],
  ] as const)("%s of %i bytes, TTL %s → %s", (route, bytes, ttl, price, description) => {
    if (!pricing) throw new Error("pricing unreadable");
    const q = quotePrice(pricing, { route, bytes, ...(ttl !== undefined ? { ttlHeader: ttl } : {}) });
    expect(q).toEqual({ price, description });
    // The emulator's own arithmetic agrees.
    const p = defaultPricing();
    const days = resolveTtl(ttl === undefined ? undefined : Number(ttl), p.ttl).days;
    expect(route === "retrieve" ? readPrice(bytes, p.retrieve) : writePrice(bytes, days, p[route])).toBe(
      price,
    );
  });

  it.each(["", "1e5", " 60", "-1", "60s"])("a TTL header %j is not priced ahead", (ttl) => {
    if (!pricing) throw new Error("pricing unreadable");
    expect(quotePrice(pricing, { route: "store", bytes: 1, ttlHeader: ttl })).toBeNull();
  });
});

describe("readPricing", () => {
  it.each([
    [null],
    [{}],
    [{ pricing: { store: { base: 1 } } }],
    [{ pricing: { ...defaultPricing(), retrieve: { base: -1, per_kib: 100 } } }],
    [{ pricing: { ...defaultPricing(), store: { base: "1000", per_kib: 100, per_kib_per_day: 10 } } }],
    [{ pricing: { ...defaultPricing(), ttl: { default_seconds: 1.5, min_seconds: 1, max_seconds: 2 } } }],
  ])("%j → null (the normal path)", (manifest) => {
    expect(readPricing(manifest)).toBeNull();
  });
});

describe("quotedChallenge", () => {
  const raw = {
    scheme: "exact",
    network: "stellar:testnet",
    maxAmountRequired: "1400",
    amount: "1400",
    resource: "http://test.api.stoka.space/v1/store",
    description: "store 42 bytes for 30 days",
    mimeType: "application/json",
    payTo: "GPAYEE",
    maxTimeoutSeconds: 120,
    asset: "CASSET",
    extra: { areFeesSponsored: true, unknown: [1] },
  };
  const template: Challenge = {
    form: "stoka",
    x402Version: 2,
    paymentHeader: "x-payment",
    receiptHeader: "x-payment-response",
    accepts: [readRequirement(raw) as NonNullable<ReturnType<typeof readRequirement>>],
    error: "Payment required",
  };

  it("rewrites the price, resource and description only; everything else verbatim", () => {
    const c = quotedChallenge(template, raw, "http://test.api.stoka.space/v1/store", {
      price: 1800n,
      description: "store 1025 bytes for 30 days",
    });
    expect(c?.accepts).toHaveLength(1);
    expect(c?.accepts[0]?.raw).toEqual({
      ...raw,
      amount: "1800",
      maxAmountRequired: "1800",
      description: "store 1025 bytes for 30 days",
    });
    expect(c?.error).toBeUndefined();
    expect(c?.paymentHeader).toBe("x-payment");
  });

  it("a description that is not stoka's: no quote", () => {
    expect(
      quotedChallenge(template, { ...raw, description: "something else" }, raw.resource, {
        price: 1n,
        description: "store 1 bytes for 30 days",
      }),
    ).toBeNull();
  });
});
