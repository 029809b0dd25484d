import {
  decodePaymentRequiredHeader,
  decodePaymentResponseHeader,
  decodePaymentSignatureHeader,
} from "@x402/core/http";
import { describe, expect, it } from "vitest";
import {
  decodeBase64Json,
  encodePaymentHeader,
  encodeReceiptHeader,
  encodeRequiredHeader,
} from "../../src/x402/payment-header.js";

/**
 * The headers the proxy sends are the official encoders' (src/x402/payment-header.ts), and the
 * proxy's bounded decoder reads the official encoders' output the same way the SDK does.
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
