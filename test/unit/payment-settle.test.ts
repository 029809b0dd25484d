import { describe, expect, it } from "vitest";
import { StokaProxyError } from "../../src/errors.js";
import { isSecondChallenge, settle, signingError, unanswered } from "../../src/payment/settle.js";
import type { AppAnswer, LedgerClose, PaidAttempt, Settlement } from "../../src/payment/settle.js";
import { receiptHeader } from "../../src/x402/outcome.js";
import { encodeBase64Json } from "../../src/x402/payment-header.js";

/** The outcome table as data: every kind of attempt → ledger row, budget step, record, answer. */
const TX = "ab".repeat(32);
const RECEIPT = encodeBase64Json({
  success: true,
  transaction: TX.toUpperCase(),
  network: "stellar:testnet",
});
const FAILED_RECEIPT = encodeBase64Json({ success: false, transaction: TX });
const PAID = { paymentId: "p-1", price: 1400n };
const SECOND = {
  headers: {},
  body: Buffer.from(
    JSON.stringify({
      x402Version: 2,
      error: "settlement failed: no funds",
      accepts: [
        { scheme: "exact", network: "n", asset: "C", payTo: "G", maxTimeoutSeconds: 120, amount: "1" },
      ],
    }),
  ),
};

const response = (
  status: number,
  receipt?: string,
  secondChallenge?: { headers: Record<string, string>; body: Buffer },
): PaidAttempt => ({ kind: "response", status, receipt, ...(secondChallenge ? { secondChallenge } : {}) });

/** The answer, with an error reduced to what the app reads of it. */
function seen(a: AppAnswer): unknown {
  if (a.kind !== "error") return a;
  return { kind: "error", code: a.error.code, status: a.error.status, details: a.error.details };
}

const paidHeaders = { "x-stoka-proxy-paid": "1400", "x-stoka-proxy-payment-id": "p-1" };
const indeterminate = (code: string, status: number) => ({
  kind: "error",
  code,
  status,
  details: { payment_id: "p-1", price: "1400" },
});

describe("settle: the outcome table", () => {
  it.each<[string, PaidAttempt, LedgerClose, Settlement["record"], unknown]>([
    [
      "2xx with a receipt → settled (tx), spent, the answer with Paid/Payment-Id/Tx",
      response(201, RECEIPT),
      { state: "settled", tx: TX, status: 201, reason: null, budget: "commit" },
      { outcome: "settled", paidAtomic: "1400", tx: TX },
      { kind: "upstream", headers: { ...paidHeaders, "x-stoka-proxy-tx": TX } },
    ],
    [
      "a 5xx that carries a valid receipt → settled: money moved, whatever the status",
      response(500, RECEIPT),
      { state: "settled", tx: TX, status: 500, reason: null, budget: "commit" },
      { outcome: "settled", paidAtomic: "1400", tx: TX },
      { kind: "upstream", headers: { ...paidHeaders, "x-stoka-proxy-tx": TX } },
    ],
    [
      "2xx without a receipt → settled, no tx, spent; no Tx header",
      response(200),
      { state: "settled", tx: null, status: 200, reason: "no receipt", budget: "commit" },
      { outcome: "settled_no_receipt", paidAtomic: "1400" },
      { kind: "upstream", headers: paidHeaders },
    ],
    [
      "2xx with a failed receipt → settled without tx",
      response(200, FAILED_RECEIPT),
      { state: "settled", tx: null, status: 200, reason: "no receipt", budget: "commit" },
      { outcome: "settled_no_receipt", paidAtomic: "1400" },
      { kind: "upstream", headers: paidHeaders },
    ],
    [
      "a second 402 → rejected with its reason, released, that 402 + payment_rejected",
      response(402, undefined, SECOND),
      { state: "rejected", tx: null, status: 402, reason: "settlement failed: no funds", budget: "release" },
      { outcome: "rejected", errorCode: "payment_rejected", reason: "settlement failed: no funds" },
      { kind: "refusal", code: "payment_rejected" },
    ],
    [
      "a second 402 whose reason cannot be read → rejected, 'second 402'",
      response(402, undefined, { headers: {}, body: Buffer.from("nope") }),
      { state: "rejected", tx: null, status: 402, reason: "second 402", budget: "release" },
      { outcome: "rejected", errorCode: "payment_rejected", reason: undefined },
      { kind: "refusal", code: "payment_rejected" },
    ],
    [
      "another 4xx (404 on a foreign key) → rejected, released, the answer as it is",
      response(404),
      { state: "rejected", tx: null, status: 404, reason: "upstream answered 404", budget: "release" },
      { outcome: "rejected" },
      { kind: "upstream", headers: {} },
    ],
    [
      "a 5xx → indeterminate, stays spent, 502 payment_indeterminate",
      response(502),
      { state: "indeterminate", tx: null, status: 502, reason: "upstream_5xx", budget: "markIndeterminate" },
      { outcome: "indeterminate", errorCode: "payment_indeterminate" },
      indeterminate("payment_indeterminate", 502),
    ],
    [
      "a 3xx → indeterminate (unexpected status)",
      response(302),
      {
        state: "indeterminate",
        tx: null,
        status: 302,
        reason: "unexpected_status",
        budget: "markIndeterminate",
      },
      { outcome: "indeterminate", errorCode: "payment_indeterminate" },
      indeterminate("payment_indeterminate", 502),
    ],
    [
      "a timeout → indeterminate, stays spent, 504 payment_indeterminate_timeout",
      { kind: "timeout" },
      { state: "indeterminate", tx: null, status: null, reason: "timeout", budget: "markIndeterminate" },
      { outcome: "indeterminate", errorCode: "payment_indeterminate_timeout" },
      indeterminate("payment_indeterminate_timeout", 504),
    ],
    [
      "a dropped connection → indeterminate, stays spent, 502",
      { kind: "dropped" },
      { state: "indeterminate", tx: null, status: null, reason: "dropped", budget: "markIndeterminate" },
      { outcome: "indeterminate", errorCode: "payment_indeterminate" },
      indeterminate("payment_indeterminate", 502),
    ],
    [
      "the retry could not connect → failed (nothing sent), released, 502 payment_not_sent",
      { kind: "not_sent" },
      {
        state: "failed",
        tx: null,
        status: null,
        reason: "the paid retry could not connect; nothing was sent",
        budget: "release",
      },
      { outcome: "failed", errorCode: "payment_not_sent" },
      { kind: "error", code: "payment_not_sent", status: 502, details: { payment_id: "p-1" } },
    ],
    [
      "the signer timed out → failed, released, its own code",
      {
        kind: "sign_failed",
        error: new StokaProxyError("payment_timeout", "took too long", "check the RPC"),
      },
      {
        state: "failed",
        tx: null,
        status: null,
        reason: "payment_timeout: took too long",
        budget: "release",
      },
      { outcome: "failed", errorCode: "payment_timeout" },
      { kind: "error", code: "payment_timeout", status: 502, details: {} },
    ],
    [
      "the signer threw something else → failed, payment_create_failed",
      { kind: "sign_failed", error: new Error("boom") },
      {
        state: "failed",
        tx: null,
        status: null,
        reason: "payment_create_failed: signing failed: boom",
        budget: "release",
      },
      { outcome: "failed", errorCode: "payment_create_failed" },
      { kind: "error", code: "payment_create_failed", status: 502, details: {} },
    ],
    [
      "the header is not the agreed payment → failed, signer_mismatch, never sent",
      { kind: "signer_mismatch", reason: "payment pays G…, not the agreed payee" },
      {
        state: "failed",
        tx: null,
        status: null,
        reason:
          "signer_mismatch: the signer's payment does not match the terms: payment pays G…, not the agreed payee",
        budget: "release",
      },
      { outcome: "failed", errorCode: "signer_mismatch" },
      { kind: "error", code: "signer_mismatch", status: 502, details: {} },
    ],
  ])("%s", (_name, attempt, ledger, record, answer) => {
    const s = settle(attempt, PAID);
    expect(s.ledger).toEqual(ledger);
    expect(s.record).toEqual(record);
    expect(seen(s.answer)).toEqual(answer);
  });

  it("the budget step follows the ledger state", () => {
    const step = {
      settled: "commit",
      rejected: "release",
      failed: "release",
      indeterminate: "markIndeterminate",
    };
    const attempts: PaidAttempt[] = [
      response(200, RECEIPT),
      response(200),
      response(402),
      response(404),
      response(500),
      response(302),
      { kind: "timeout" },
      { kind: "dropped" },
      { kind: "not_sent" },
      { kind: "sign_failed", error: new Error("x") },
      { kind: "signer_mismatch", reason: "x" },
    ];
    for (const a of attempts) {
      const { ledger } = settle(a, PAID);
      expect(ledger.budget).toBe(step[ledger.state]);
    }
  });

  it("an indeterminate answer names the cause and the upstream status, and says not to resend", () => {
    const s = settle(response(503), PAID);
    expect(s.answer.kind === "error" && [s.answer.error.message, s.answer.error.hint]).toEqual([
      "the paid request was sent but its outcome is unknown (upstream_5xx, upstream status 503); it was not retried",
      expect.stringMatching(/^do not resend blindly/),
    ]);
    const t = settle({ kind: "timeout" }, PAID);
    expect(t.answer.kind === "error" && t.answer.error.message).toBe(
      "the paid request was sent but its outcome is unknown (timeout); it was not retried",
    );
  });
});

describe("which answers are a second 402", () => {
  it.each<[number, string, boolean, string | undefined]>([
    [402, "none", true, undefined],
    [402, "a failed one", true, FAILED_RECEIPT],
    [402, "a valid one", false, RECEIPT], // money moved: settled, handed on as it is
    [400, "none", false, undefined],
    [200, "none", false, undefined],
    [500, "none", false, undefined],
  ])("%i with receipt: %s → %s", (status, _label, second, receipt) => {
    expect(isSecondChallenge(status, receipt)).toBe(second);
  });
});

describe("signingError", () => {
  it("keeps a StokaProxyError, wraps anything else as payment_create_failed", () => {
    const own = new StokaProxyError("payment_timeout", "slow", "wait");
    expect(signingError(own)).toBe(own);
    expect(signingError(new Error("boom"))).toMatchObject({
      code: "payment_create_failed",
      message: "signing failed: boom",
    });
  });
});

describe("the paid retry without an answer", () => {
  it.each([
    ["connect", "not_sent", "failed"],
    ["timeout", "timeout", "indeterminate"],
    ["dropped", "dropped", "indeterminate"],
  ] as const)("%s → %s → %s", (kind, attempt, state) => {
    expect(unanswered(kind)).toEqual({ kind: attempt });
    expect(settle(unanswered(kind), PAID).ledger.state).toBe(state);
  });
});

describe("receiptHeader", () => {
  it.each<[string, Record<string, string | string[] | undefined>, string | undefined]>([
    ["X-PAYMENT-RESPONSE", { "x-payment-response": "a" }, "a"],
    ["PAYMENT-RESPONSE (x402 v2)", { "payment-response": "b" }, "b"],
    ["both: X-PAYMENT-RESPONSE first", { "x-payment-response": "a", "payment-response": "b" }, "a"],
    ["repeated: the first", { "x-payment-response": ["a", "c"] }, "a"],
    ["none", {}, undefined],
  ])("%s", (_name, headers, value) => {
    expect(receiptHeader(headers)).toBe(value);
  });
});
