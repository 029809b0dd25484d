import {
  decodePaymentRequiredHeader,
  decodePaymentResponseHeader,
  decodePaymentSignatureHeader,
  encodePaymentRequiredHeader,
  encodePaymentResponseHeader,
  encodePaymentSignatureHeader,
} from "@x402/core/http";
import type { PaymentPayload, PaymentRequired, SettleResponse } from "@x402/core/types";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeBase64Json,
  encodePaymentHeader,
  encodeReceiptHeader,
  encodeRequiredHeader,
} from "../../src/x402/payment-header.js";

/**
 * The headers the proxy sends are byte for byte the official encoders' (src/x402/payment-header.ts),
 * and the proxy's bounded decoder reads the official encoders' output the same way the SDK does.
 */
const requirement = {
  scheme: "exact",
  network: "stellar:testnet",
  amount: "1400",
  asset: "CUSDC",
  payTo: "GPAYEE",
  maxTimeoutSeconds: 60,
  extra: { note: "ünïcødé ✓", nested: { n: 1 } },
};

describe("x402 header codec", () => {
  it.each([
    [
      "payment",
      () => encodePaymentHeader({ x402Version: 2, accepted: requirement, payload: { transaction: "AAAA" } }),
      decodePaymentSignatureHeader,
    ],
    [
      "payment, stoka/v1 form",
      () =>
        encodePaymentHeader({
          x402Version: 1,
          scheme: "exact",
          network: "stellar:testnet",
          payload: { transaction: "AAAA" },
        }),
      decodePaymentSignatureHeader,
    ],
    [
      "required",
      () =>
        encodeRequiredHeader({ x402Version: 2, resource: { url: "https://h/x" }, accepts: [requirement] }),
      decodePaymentRequiredHeader,
    ],
    [
      "receipt",
      () => encodeReceiptHeader({ success: true, transaction: "ab", network: "stellar:testnet", payer: "G" }),
      decodePaymentResponseHeader,
    ],
  ] as const)("%s: the official decoder and ours read the same value", (_name, encode, official) => {
    const header = encode();
    expect(decodeBase64Json(header)).toEqual(official(header));
  });

  it("every header is byte for byte what the official encoder makes of the same value", () => {
    const value = fc.dictionary(fc.string({ unit: "grapheme" }), fc.jsonValue(), { maxKeys: 8 });
    fc.assert(
      fc.property(value, (v) => {
        expect(encodePaymentHeader(v)).toBe(encodePaymentSignatureHeader(v as unknown as PaymentPayload));
        expect(encodeRequiredHeader(v)).toBe(encodePaymentRequiredHeader(v as unknown as PaymentRequired));
      }),
      { numRuns: 300 },
    );
    const receipt = { success: true, transaction: "ab", network: "stellar:testnet", payer: "Gé✓" };
    expect(encodeReceiptHeader(receipt)).toBe(encodePaymentResponseHeader(receipt as SettleResponse));
  });

  it("refuses what the official decoders refuse, and deep JSON they would parse", () => {
    for (const bad of ["not base64!", "YWJj-", "%%%%"]) {
      expect(() => decodeBase64Json(bad)).toThrow();
      expect(() => decodePaymentSignatureHeader(bad)).toThrow();
    }
    const deep = Buffer.from(`${"[".repeat(5000)}${"]".repeat(5000)}`).toString("base64");
    expect(() => decodePaymentSignatureHeader(deep)).not.toThrow();
    expect(() => decodeBase64Json(deep)).toThrow();
  });
});
