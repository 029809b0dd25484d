/**
 * What a restart does with a payment the previous process left open: release it when it was
 * provably never sent, mark it indeterminate (still counted against budgets) otherwise. Pure:
 * the caller passes each open payment's ledger rows, in ledger order.
 *
 * The rows a payment writes, in order:
 * - `reserved`: the budget holds the price. Nothing is signed yet.
 * - `signed`: the signer returned the payment header; it exists only in this process's memory
 *   (the configured Soroban RPC saw the signed authorization while simulating it; that RPC is
 *   part of the signer's trust, not a payee). Not sent.
 * - `sent` — the "handed to the socket" marker: written, and committed to the ledger, after the
 *   connection for the paid retry is established and BEFORE the first byte of that request is
 *   written to it. If there is no `sent` row, no byte of the paid request left the process,
 *   so the upstream never saw the header and nothing can have been charged. With a `sent` row
 *   the bytes may have left (a crash between the commit and the write makes this a false
 *   "maybe", never a false "no"). A resend of the same header writes another `sent` row before
 *   its own first byte.
 * - `throttled`: the answer to a send was 429 (or 503 with `Retry-After`) and the same header
 *   waits to be resent (paid-resend.ts). A 429 is a refusal to serve the request (RFC 6585
 *   §4), read as "not charged" as the proxy reads every 4xx after a paid retry; a 503 may
 *   come after the payment settled, so it proves nothing.
 * - a final row: `settled`, `rejected`, `failed`, `indeterminate` — nothing left to recover.
 *
 * Ledgers written before the marker existed have `sent` written before connecting (it then
 * meant "signed, about to send"): such a row still reads as "maybe sent", which is the old,
 * conservative answer. Their `reserved`-only payments were never signed, so they are released
 * either way. Any state this code does not know is read as "maybe sent".
 *
 * @example
 * recoveryFor([{ state: "reserved" }])                      // → { action: "release", … }
 * recoveryFor([{ state: "reserved" }, { state: "signed" }]) // → { action: "release", … }
 * recoveryFor([{ state: "reserved" }, { state: "signed" }, { state: "sent" }]) // → { action: "indeterminate", … }
 * recoveryFor([{ state: "reserved" }, { state: "sent" }, { state: "throttled", upstreamStatus: 429 }]) // → { action: "release", … }
 * recoveryFor([{ state: "reserved" }, { state: "sent" }, { state: "settled" }]) // → { action: "keep" }
 */
export interface RecoveryRow {
  state: string;
  /** The upstream status a row recorded (a `throttled` row: the 429 or 503 that was answered). */
  upstreamStatus?: number | null;
}

export type RecoveryAction =
  { action: "keep" } | { action: "release"; reason: string } | { action: "indeterminate"; reason: string };

export const FINAL_STATES: ReadonlySet<string> = new Set(["settled", "rejected", "failed", "indeterminate"]);
const KNOWN_OPEN_STATES: ReadonlySet<string> = new Set(["reserved", "signed", "sent", "throttled"]);

export function recoveryFor(rows: readonly RecoveryRow[]): RecoveryAction {
  const last = rows[rows.length - 1];
  if (!last) return { action: "keep" };
  if (FINAL_STATES.has(last.state)) return { action: "keep" };
  const unknown = rows.find((r) => !KNOWN_OPEN_STATES.has(r.state));
  if (unknown) {
    return {
      action: "indeterminate",
      reason: `interrupted in a state this version does not know (${unknown.state.slice(0, 40)}); the outcome is unknown`,
    };
  }
  let sends = 0;
  let unanswered = false;
  let only429 = true;
  for (const r of rows) {
    if (r.state === "sent") {
      // A send whose answer was never recorded: it may have been processed.
      if (unanswered) break;
      sends += 1;
      unanswered = true;
    } else if (r.state === "throttled") {
      // An answer with no send before it: the rows are not what this code writes.
      if (!unanswered)
        return {
          action: "indeterminate",
          reason: "interrupted with an answer recorded before any send; the outcome is unknown",
        };
      unanswered = false;
      if (r.upstreamStatus !== 429) only429 = false;
    }
  }
  if (sends === 0) {
    const signed = rows.some((r) => r.state === "signed");
    return {
      action: "release",
      reason: signed
        ? "interrupted after signing and before the payment header was handed to the socket; nothing was sent"
        : "interrupted before signing; nothing was signed or sent",
    };
  }
  if (unanswered)
    return {
      action: "indeterminate",
      reason: "interrupted after the payment header was handed to the socket; the outcome is unknown",
    };
  if (only429)
    return {
      action: "release",
      reason: `interrupted while waiting to resend; every send (${sends}) was answered 429, so none was processed`,
    };
  return {
    action: "indeterminate",
    reason: "interrupted while waiting to resend; a send was answered 503 and may have been charged",
  };
}

export interface OpenPayment {
  paymentId: string;
  amount: bigint;
  rows: readonly RecoveryRow[];
}

export interface RecoveryPlan {
  release: { paymentId: string; amount: bigint; reason: string }[];
  indeterminate: { paymentId: string; amount: bigint; reason: string }[];
  /** Atomic units freed (released) and still held (indeterminate): for the start-up log line. */
  releasedAtomic: bigint;
  heldAtomic: bigint;
}

export function planRecovery(payments: Iterable<OpenPayment>): RecoveryPlan {
  const plan: RecoveryPlan = { release: [], indeterminate: [], releasedAtomic: 0n, heldAtomic: 0n };
  for (const p of payments) {
    const a = recoveryFor(p.rows);
    if (a.action === "release") {
      plan.release.push({ paymentId: p.paymentId, amount: p.amount, reason: a.reason });
      plan.releasedAtomic += p.amount;
    } else if (a.action === "indeterminate") {
      plan.indeterminate.push({ paymentId: p.paymentId, amount: p.amount, reason: a.reason });
      plan.heldAtomic += p.amount;
    }
  }
  return plan;
}
