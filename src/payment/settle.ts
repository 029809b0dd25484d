import { StokaProxyError } from "../errors.js";
import type { IncomingHttpHeaders } from "node:http";
import type { PaymentState } from "../ledger/entry.js";
import type { RequestRecord } from "../observability/request-record.js";
import { parseChallenge } from "../x402/challenge.js";
import { classifyRetry } from "../x402/outcome.js";
import type { RetryResult } from "../x402/outcome.js";

/**
 * What a payment attempt that got past the decision comes to (docs/architecture.md, The
 * outcome table): the ledger row that closes it, what the budget does with the reservation,
 * what the request's record says and what the app gets. Pure; paid-exchange.ts does it.
 *
 *   attempt                               ledger          budget        the app gets
 *   2xx, or any status with a receipt     settled (tx)    commit        the answer + X-Stoka-Proxy-Paid/-Payment-Id/-Tx
 *   2xx without a receipt                 settled         commit        the answer + X-Stoka-Proxy-Paid/-Payment-Id
 *   a second 402                          rejected        release       that 402 + X-Stoka-Proxy-Error: payment_rejected
 *   another 4xx                           rejected        release       the answer
 *   5xx, timeout, dropped, 1xx/3xx        indeterminate   stays spent   502 payment_indeterminate / 504 …_timeout
 *   the retry could not connect           failed          release       502 payment_not_sent
 *   signing failed / header mismatch      failed          release       502 (the signer's code, or signer_mismatch)
 *
 * The paid retry is sent at most once and never retried: an unknown outcome stays counted as
 * spent until `stoka-proxy reconcile` decides it.
 */
export type PaidAttempt =
  /** The signer failed (or timed out): nothing was sent. */
  | { kind: "sign_failed"; error: unknown }
  /** The signed header is not the payment that was agreed (x402/payment-check.ts): not sent. */
  | { kind: "signer_mismatch"; reason: string }
  | Exclude<RetryResult, { kind: "response" }>
  | {
      kind: "response";
      status: number;
      receipt: string | undefined;
      /** A second 402's headers and body (buffered), to read its reason. */
      secondChallenge?: { headers: IncomingHttpHeaders; body: Buffer };
    };

/** The ledger row that closes the payment, and the budget step that goes with it. */
export interface LedgerClose {
  state: Extract<PaymentState, "settled" | "rejected" | "failed" | "indeterminate">;
  tx: string | null;
  status: number | null;
  reason: string | null;
  budget: "commit" | "release" | "markIndeterminate";
}

export type AppAnswer =
  /** The retry's answer, streamed, with these headers added. */
  | { kind: "upstream"; headers: Record<string, string> }
  /** The retry's 402, as received, with `X-Stoka-Proxy-Error: <code>`. */
  | { kind: "refusal"; code: "payment_rejected" }
  /** Our JSON error (the retry's answer, if any, is drained). */
  | { kind: "error"; error: StokaProxyError };

export interface Settlement {
  ledger: LedgerClose;
  record: Partial<RequestRecord>;
  answer: AppAnswer;
}

export interface PaidRequest {
  paymentId: string;
  price: bigint;
}

/**
 * The paid retry that got no answer: `connect` means nothing reached stoka (nothing can have
 * been charged); a timeout or a dropped connection after connecting leaves the outcome unknown.
 */
export function unanswered(kind: "connect" | "timeout" | "dropped"): PaidAttempt {
  return kind === "connect" ? { kind: "not_sent" } : { kind };
}

/** Whether the retry's answer is a second 402 (its body is then read, to hand on its reason). */
export function isSecondChallenge(status: number, receipt: string | undefined): boolean {
  const o = classifyRetry({ kind: "response", status, receipt });
  return o.outcome === "rejected" && o.secondChallenge;
}

/** The failed signer's error as the app hears it: its own code, or payment_create_failed. */
export function signingError(e: unknown): StokaProxyError {
  return e instanceof StokaProxyError
    ? e
    : new StokaProxyError(
        "payment_create_failed",
        `signing failed: ${(e as Error).message}`,
        "check the wallet and RPC",
      );
}

const failedBeforeSending = (error: StokaProxyError): Settlement => ({
  ledger: {
    state: "failed",
    tx: null,
    status: null,
    reason: `${error.code}: ${error.message}`,
    budget: "release",
  },
  record: { outcome: "failed", errorCode: error.code },
  answer: { kind: "error", error },
});

export function settle(attempt: PaidAttempt, paid: PaidRequest): Settlement {
  const price = paid.price.toString();
  switch (attempt.kind) {
    case "sign_failed":
      return failedBeforeSending(signingError(attempt.error));
    case "signer_mismatch":
      return failedBeforeSending(
        new StokaProxyError(
          "signer_mismatch",
          `the signer's payment does not match the terms: ${attempt.reason}`,
          "check the external signer",
        ),
      );
    default:
      return settleRetry(attempt, paid, price);
  }
}

function settleRetry(
  attempt: Exclude<PaidAttempt, { kind: "sign_failed" | "signer_mismatch" }>,
  paid: PaidRequest,
  price: string,
): Settlement {
  const outcome = classifyRetry(
    attempt.kind === "response"
      ? { kind: "response", status: attempt.status, receipt: attempt.receipt }
      : attempt,
  );
  const status = attempt.kind === "response" ? attempt.status : null;
  switch (outcome.outcome) {
    case "settled": {
      const headers: Record<string, string> = {
        "x-stoka-proxy-paid": price,
        "x-stoka-proxy-payment-id": paid.paymentId,
      };
      if (outcome.tx) headers["x-stoka-proxy-tx"] = outcome.tx;
      return {
        ledger: {
          state: "settled",
          tx: outcome.tx,
          status,
          reason: outcome.tx ? null : "no receipt",
          budget: "commit",
        },
        record: {
          outcome: outcome.tx ? "settled" : "settled_no_receipt",
          paidAtomic: price,
          ...(outcome.tx ? { tx: outcome.tx } : {}),
        },
        answer: { kind: "upstream", headers },
      };
    }
    case "rejected": {
      if (!outcome.secondChallenge)
        return {
          ledger: {
            state: "rejected",
            tx: null,
            status,
            reason: `upstream answered ${status}`,
            budget: "release",
          },
          record: { outcome: "rejected" },
          answer: { kind: "upstream", headers: {} },
        };
      // The second 402: handed over with its reason. Never paid again for this request.
      const second = attempt.kind === "response" ? attempt.secondChallenge : undefined;
      const read = second ? parseChallenge(second.headers, second.body.toString("utf8")) : undefined;
      const reason = read?.ok ? read.challenge.error : undefined;
      return {
        ledger: {
          state: "rejected",
          tx: null,
          status: 402,
          reason: reason ?? "second 402",
          budget: "release",
        },
        record: { outcome: "rejected", errorCode: "payment_rejected", reason },
        answer: { kind: "refusal", code: "payment_rejected" },
      };
    }
    case "failed":
      return {
        ledger: {
          state: "failed",
          tx: null,
          status: null,
          reason: "the paid retry could not connect; nothing was sent",
          budget: "release",
        },
        record: { outcome: "failed", errorCode: "payment_not_sent" },
        answer: {
          kind: "error",
          error: new StokaProxyError(
            "payment_not_sent",
            "stoka could not be reached for the paid retry; nothing was sent",
            "retry the request",
            { details: { payment_id: paid.paymentId } },
          ),
        },
      };
    case "indeterminate": {
      const code = outcome.cause === "timeout" ? "payment_indeterminate_timeout" : "payment_indeterminate";
      const upstream = status === null ? "" : `, upstream status ${status}`;
      return {
        ledger: {
          state: "indeterminate",
          tx: null,
          status,
          reason: outcome.cause,
          budget: "markIndeterminate",
        },
        record: { outcome: "indeterminate", errorCode: code },
        answer: {
          kind: "error",
          error: new StokaProxyError(
            code,
            `the paid request was sent but its outcome is unknown (${outcome.cause}${upstream}); it was not retried`,
            "do not resend blindly: check the object (or GET /v1/me/usage) first; the amount stays counted as spent until reconciled",
            { details: { payment_id: paid.paymentId, price } },
          ),
        },
      };
    }
  }
}
