import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatUsdc, parseAmount } from "../../src/stellar/amount.js";
import { parseStellarAuthorization } from "../../src/stellar/wallet-auth.js";
import { parseChallenge } from "../../src/x402/challenge.js";
import { classifyRetry } from "../../src/x402/outcome.js";
import { encodeBase64Json } from "../../src/x402/payment-header.js";
import { withoutHopByHop } from "../../src/http/hop-by-hop.js";

/**
 * Property tests on the parsers that read what upstreams and apps send. Each runs for a time
 * budget: `numRuns` is far more than fits in it, so the clock is what stops the run (the
 * machine runs other work too; an interrupted run passes if nothing failed so far).
 */
const RUNS = { numRuns: 10_000_000, interruptAfterTimeLimit: 2_000 };

describe("fuzz", () => {
  it("parseChallenge never throws, whatever the body and header", () => {
    fc.assert(
      fc.property(fc.string(), fc.option(fc.string()), (body, header) => {
        const r = parseChallenge(header === null ? {} : { "payment-required": header }, body);
        expect(typeof r.ok).toBe("boolean");
      }),
      RUNS,
    );
  });

  it("parseChallenge never accepts a non-integer or negative price", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (amount) => {
        const body = JSON.stringify({
          x402Version: 2,
          accepts: [{ scheme: "exact", network: "n", asset: "a", payTo: "p", maxTimeoutSeconds: 1, amount }],
        });
        const r = parseChallenge({}, body);
        if (r.ok) expect(r.challenge.accepts[0]?.amount).toMatch(/^[0-9]+$/);
      }),
      RUNS,
    );
  });

  it("v2 header challenges survive any JSON payload", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (payload) => {
        expect(() => parseChallenge({ "payment-required": encodeBase64Json(payload) }, "")).not.toThrow();
      }),
      RUNS,
    );
  });

  it("amounts round-trip through USDC text exactly", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 18n }), (atomic) => {
        expect(parseAmount(formatUsdc(atomic))).toBe(atomic);
      }),
      RUNS,
    );
  });

  it("the Authorization parser never throws", () => {
    fc.assert(
      fc.property(fc.string(), (h) => {
        expect(() => parseStellarAuthorization(h)).not.toThrow();
      }),
      RUNS,
    );
  });

  it("a receipt header of any shape never turns a 5xx into anything but settled or indeterminate", () => {
    fc.assert(
      fc.property(fc.integer({ min: 500, max: 599 }), fc.option(fc.string()), (status, receipt) => {
        const o = classifyRetry({ kind: "response", status, receipt: receipt ?? undefined }).outcome;
        expect(["settled", "indeterminate"]).toContain(o);
      }),
      RUNS,
    );
  });

  it("hop-by-hop stripping never lets Connection-named or Proxy-* headers through", () => {
    fc.assert(
      fc.property(fc.array(fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/), { maxLength: 6 }), (names) => {
        const headers: Record<string, string> = { connection: names.join(", "), "proxy-x": "1", keep: "1" };
        for (const n of names) headers[n] = "v";
        const out = withoutHopByHop(headers);
        for (const n of names) expect(out[n]).toBeUndefined();
        expect(out["proxy-x"]).toBeUndefined();
        if (!names.includes("keep")) expect(out.keep).toBe("1");
      }),
      RUNS,
    );
  });
});
