import { decodeBase64Json, isPaymentReceipt } from "./payment-header.js";

/**
 * What happened to the money after the paid retry (docs/architecture.md, The outcome table; payment/settle.ts builds on it). Pure.
 * A valid receipt means money moved whatever the status; without one, the status decides;
 * a 5xx, a timeout or a dropped connection leaves the outcome unknown.
 */
export type RetryResult =
  | { kind: "response"; status: number; receipt: string | undefined }
  | { kind: "timeout" }
  | { kind: "dropped" }
  /** The connection was never established: nothing was sent, nothing can have been charged. */
  | { kind: "not_sent" };

export type PaidOutcome =
  | { outcome: "settled"; tx: string | null }
  | { outcome: "rejected"; secondChallenge: boolean }
  | { outcome: "indeterminate"; cause: "upstream_5xx" | "timeout" | "dropped" | "unexpected_status" }
  | { outcome: "failed" };

/** The receipt header of a paid answer (`X-PAYMENT-RESPONSE`, or x402 v2's `PAYMENT-RESPONSE`). */
export function receiptHeader(headers: Record<string, string | string[] | undefined>): string | undefined {
  const value = headers["x-payment-response"] ?? headers["payment-response"];
  return Array.isArray(value) ? value[0] : value;
}

/** Reads a receipt header; returns the tx hash only for a successful, well-formed receipt. */
export function receiptTx(value: string | undefined): string | null {
  if (!value) return null;
  try {
    const r = decodeBase64Json(value.trim());
    if (isPaymentReceipt(r) && r.success && /^[0-9a-fA-F]{64}$/.test(r.transaction))
      return r.transaction.toLowerCase();
  } catch {
    // An unreadable receipt is treated as no receipt.
  }
  return null;
}

export function classifyRetry(r: RetryResult): PaidOutcome {
  switch (r.kind) {
    case "not_sent":
      return { outcome: "failed" };
    case "timeout":
      return { outcome: "indeterminate", cause: "timeout" };
    case "dropped":
      return { outcome: "indeterminate", cause: "dropped" };
    case "response": {
      const tx = receiptTx(r.receipt);
      if (tx) return { outcome: "settled", tx };
      if (r.status >= 200 && r.status < 300) return { outcome: "settled", tx: null };
      if (r.status === 402) return { outcome: "rejected", secondChallenge: true };
      if (r.status >= 400 && r.status < 500) return { outcome: "rejected", secondChallenge: false };
      if (r.status >= 500) return { outcome: "indeterminate", cause: "upstream_5xx" };
      return { outcome: "indeterminate", cause: "unexpected_status" };
    }
  }
}
