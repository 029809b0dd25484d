import { describe, expect, it } from "vitest";
import type { PaidHost } from "../../src/config/config.js";
import { QuoteAhead } from "../../src/payment/quote-ahead.js";
import type { QuoteRequest } from "../../src/payment/quote-ahead.js";
import { defaultPricing } from "../../src/sandbox/pricing.js";
import { readPricing } from "../../src/stoka/quote.js";
import type { Challenge } from "../../src/x402/challenge.js";
import { readRequirement } from "../../src/x402/challenge.js";

/**
 * What QuoteAhead (src/payment/quote-ahead.ts) remembers as an object's size for a later
 * quoted retrieve: a whole 200 answer's length; never a 206 range or a compressed body (their
 * Content-Length is not the object's size, the quote would be wrong and the app get a 402).
 */
const BASE = "http://test.api.stoka.space";
const WALLET = "GWALLETWALLETWALLETWALLETWALLETWALLETWALLETWALLETWALLET";
const host: PaidHost = {
  host: "test.api.stoka.space",
  payTo: [],
  upstream: new URL(BASE),
  quoteAhead: ["retrieve"],
};
const raw = {
  scheme: "exact",
  network: "stellar:testnet",
  amount: "1100",
  resource: `${BASE}/v1/retrieve/t`,
  description: "retrieve 42 bytes",
  payTo: "GPAYEE",
  maxTimeoutSeconds: 120,
  asset: "CASSET",
};
const template: Challenge = {
  form: "stoka",
  x402Version: 2,
  paymentHeader: "x-payment",
  receiptHeader: "x-payment-response",
  accepts: [readRequirement(raw) as NonNullable<ReturnType<typeof readRequirement>>],
};
const retrieve = (key: string, headers: Record<string, string> = {}): QuoteRequest => ({
  target: { host, url: new URL(`${BASE}/v1/retrieve/${key}`) },
  route: "retrieve",
  headers: { "x-stoka-owner": WALLET, ...headers },
  body: Buffer.alloc(0),
  wallet: WALLET,
});
const priceOf = (c: Challenge | undefined) => c?.accepts[0]?.raw.amount;

describe("QuoteAhead: the sizes a retrieve is quoted at", () => {
  it.each([
    [200, {}, "1300"], // 3000 bytes: 1000 + 100 × 3
    [206, { "content-range": "bytes 0-9/3000" }, undefined],
    [200, { "content-encoding": "gzip" }, undefined],
  ] as const)("a %i answer with %j → quoted at %s", async (status, extra, price) => {
    const pricing = readPricing({ pricing: defaultPricing() });
    const q = new QuoteAhead(
      async () => pricing,
      () => 0,
    );
    q.learn(retrieve("t"), template, raw);
    const length = status === 200 && !("content-encoding" in extra) ? "3000" : "10";
    q.answered(retrieve("k"), status, { "content-length": length, ...extra });
    expect(priceOf(await q.challengeFor(retrieve("k")))).toBe(price);
  });

  it("a range after a whole answer forgets the size (the normal path), never a smaller price", async () => {
    const pricing = readPricing({ pricing: defaultPricing() });
    const q = new QuoteAhead(
      async () => pricing,
      () => 0,
    );
    q.learn(retrieve("t"), template, raw);
    q.answered(retrieve("k"), 200, { "content-length": "3000" });
    q.answered(retrieve("k", { range: "bytes=0-9" }), 206, { "content-length": "10" });
    expect(await q.challengeFor(retrieve("k"))).toBeUndefined();
  });
});
