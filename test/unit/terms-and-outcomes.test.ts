import { describe, expect, it } from "vitest";
import { classifyRetry, receiptTx } from "../../src/x402/outcome.js";
import type { RetryResult } from "../../src/x402/outcome.js";
import { encodeBase64Json } from "../../src/x402/payment-header.js";
import type { PaymentRequirement } from "../../src/x402/payment-header.js";
import { selectRequirement, termViolation } from "../../src/x402/terms.js";
import type { PinnedTerms } from "../../src/x402/terms.js";

const PAYEE = "GAPRO7H3JNM4LVR33IDR5PYNQ35TJJXWJW65HU267RIPJIUUGEPWCAXB";
const ASSET = "CBIELTK6YBZJU5UP2WWQEUCYKLPU6AUNZ2BQ4WWFEIE3USCIHMXQDAMA";
const terms: PinnedTerms = {
  network: "stellar:testnet",
  asset: ASSET,
  payTo: [PAYEE],
  minTimeoutSeconds: 10,
  maxTimeoutSeconds: 600,
};
const fields = {
  scheme: "exact",
  network: "stellar:testnet",
  asset: ASSET,
  payTo: PAYEE,
  maxAmountRequired: "1400",
  maxTimeoutSeconds: 120,
  extra: { areFeesSponsored: true },
};
// The terms read the typed view only; `raw` is what the payment echoes.
const good: PaymentRequirement = { ...fields, raw: fields };

describe("pinned terms (docs/wire-protocol.md)", () => {
  it("accepts the documented requirement", () => {
    expect(termViolation(good, terms)).toBeNull();
    expect(selectRequirement([good], terms)).toEqual({ ok: true, requirement: good, price: 1400n });
  });

  it.each<[string, Partial<PaymentRequirement>, RegExp]>([
    ["scheme", { scheme: "upto" }, /scheme/],
    ["network", { network: "stellar:pubnet" }, /network/],
    ["asset", { asset: "CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75" }, /asset/],
    ["payee", { payTo: "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5" }, /payee/],
    ["timeout too long", { maxTimeoutSeconds: 3600 }, /maxTimeoutSeconds/],
    ["timeout too short", { maxTimeoutSeconds: 1 }, /maxTimeoutSeconds/],
    ["fees not sponsored", { extra: { areFeesSponsored: false } }, /sponsored/],
    ["no extra", { extra: undefined }, /sponsored/],
    ["zero price", { maxAmountRequired: "0" }, /positive/],
  ])("refuses a bad %s", (_name, change, reason) => {
    expect(termViolation({ ...good, ...change }, terms)).toMatch(reason);
  });

  it("picks the first acceptable requirement and uses `amount` over maxAmountRequired", () => {
    const bad = { ...good, network: "stellar:pubnet" };
    const r = selectRequirement([bad, { ...good, amount: "1300" }], terms);
    expect(r.ok && r.price).toBe(1300n);
  });

  it("explains every refusal", () => {
    const r = selectRequirement(
      [
        { ...good, scheme: "upto" },
        { ...good, payTo: "G".padEnd(56, "A") },
      ],
      terms,
    );
    expect(!r.ok && r.reason).toMatch(/scheme.*payee/);
  });
});

const receipt = (tx: string, success = true) =>
  encodeBase64Json({ success, transaction: tx, network: "stellar:testnet", payer: "G" });
const TX = "a".repeat(64);

describe("outcome of the paid retry (docs/architecture.md outcome table)", () => {
  it.each<[string, RetryResult, string]>([
    ["2xx with receipt", { kind: "response", status: 201, receipt: receipt(TX) }, "settled"],
    ["2xx without receipt", { kind: "response", status: 200, receipt: undefined }, "settled"],
    ["second 402", { kind: "response", status: 402, receipt: undefined }, "rejected"],
    ["404 on PUT", { kind: "response", status: 404, receipt: undefined }, "rejected"],
    ["400 bad header", { kind: "response", status: 400, receipt: undefined }, "rejected"],
    ["500", { kind: "response", status: 500, receipt: undefined }, "indeterminate"],
    ["503", { kind: "response", status: 503, receipt: undefined }, "indeterminate"],
    ["302 without receipt", { kind: "response", status: 302, receipt: undefined }, "indeterminate"],
    ["5xx with a receipt: money moved", { kind: "response", status: 500, receipt: receipt(TX) }, "settled"],
    ["timeout", { kind: "timeout" }, "indeterminate"],
    ["dropped", { kind: "dropped" }, "indeterminate"],
    ["never connected", { kind: "not_sent" }, "failed"],
  ])("%s → %s", (_name, result, outcome) => {
    expect(classifyRetry(result).outcome).toBe(outcome);
  });

  it("only a successful, well-formed receipt names a transaction", () => {
    expect(receiptTx(receipt(TX))).toBe(TX);
    expect(receiptTx(receipt(TX, false))).toBeNull();
    expect(receiptTx(receipt("abc"))).toBeNull();
    expect(receiptTx("not base64!")).toBeNull();
    expect(receiptTx(undefined)).toBeNull();
  });
});
