import { perRequestCap } from "../budget/budget.js";
import { formatUsdc } from "../stellar/amount.js";
import type { BudgetDenial } from "../budget/store.js";
import type { Budget, TermBounds } from "../config/config.js";
import type { ErrorCode } from "../errors.js";
import type { RequestRecord } from "../observability/request-record.js";
import { readBoundedJson } from "../parsing/bounded-json.js";
import type { Challenge, ChallengeParse } from "../x402/challenge.js";
import type { PaymentRequirement } from "../x402/payment-header.js";
import { selectRequirement } from "../x402/terms.js";

/**
 * Whether to pay a 402, and what (docs/architecture.md, Payments). Pure: the I/O shell
 * (proxy/paid-exchange.ts) gathers the facts, calls these in order and does what they say.
 * Every refusal happens before anything is signed; the first four (and no_signer) before
 * anything is reserved. The order of the checks, first match wins:
 *
 *   step               refusal                 when
 *   readChallenge      challenge_unreadable    the 402 is in no known form, or offers nothing usable
 *   decide             payee_unknown           no payee configured, and the manifest named none
 *                      terms_rejected          no requirement passes the pinned terms
 *                      no_budget               no budget covers the request
 *                      price_above_cap         the price is above the lowest per-request cap
 *                      no_signer               no wallet key or payment command
 *   (remote signer)    signer_refused          the signer role refused (its budgets, its terms)
 *   afterReservation   budget_unavailable      the budget store cannot be checked (fail closed)
 *                      budget_exceeded         a limit of a matching budget would be exceeded
 *   approval (gate)     approval_denied         a person denied it, or too many wait (released)
 *                      approval_timeout        nobody decided within the wait (released)
 *
 * A refusal answers 402 with the upstream's own body (so stoka clients can still read
 * `accepts`) plus `proxy: {code, reason, price?, budget?}`, and `X-Stoka-Proxy-Error: <code>`.
 */
export type RefusalCode = Extract<
  ErrorCode,
  | "challenge_unreadable"
  | "payee_unknown"
  | "terms_rejected"
  | "no_budget"
  | "price_above_cap"
  | "no_signer"
  | "budget_unavailable"
  | "budget_exceeded"
  | "payments_stopped"
  | "dry_run"
  | "approval_denied"
  | "approval_timeout"
  | "signer_refused"
>;

export interface Refusal {
  kind: "refuse";
  code: RefusalCode;
  reason: string;
  /** Added to the answer's `proxy` object next to code and reason (price, budget). */
  extra: Record<string, unknown>;
  /** The budget that was full (budget_exceeded), for its denial counter. */
  budgetDenied?: string;
  /** terms_rejected: the first requirement's broken term (a security event's facts). */
  refusedTerm?: { term: string; offered: string };
}

/** The 402 can be read: its requirements are judged next. */
export interface Readable {
  kind: "readable";
  challenge: Challenge;
}

/** Pay this requirement, at this price, reserved in these budgets, with this signer. */
export interface Pay<Signer> {
  kind: "pay";
  challenge: Challenge;
  requirement: PaymentRequirement;
  price: bigint;
  budgets: Budget[];
  signer: Signer;
}

export interface DecisionInput<Signer> {
  challenge: Challenge;
  /** The paid host's name, for the reasons. */
  host: string;
  /** Allowed payees: configured, or learned from the host's manifest. */
  payees: readonly string[];
  /** The pinned network, asset and timeout bounds (docs/wire-protocol.md, Pinned terms). */
  terms: TermBounds & { network: string; asset: string };
  /** The budgets whose match covers this request. */
  budgets: readonly Budget[];
  signer: Signer | undefined;
  /**
   * The signer keeps the budgets (a keyless sidecar's remote signer, docs/security.md): no
   * local budget is needed; local ones that match still cap and count.
   */
  budgetsAtSigner?: boolean;
}

/** What the budget store answered to the reservation. */
export type Reservation<Payment> =
  | { kind: "reserved"; payment: Payment }
  | { kind: "denied"; denial: BudgetDenial }
  | { kind: "unavailable"; reason: string };

/** Bound on a 402 body the proxy reads (and hands back). */
export const MAX_CHALLENGE_BYTES = 256 * 1024;
const CHALLENGE_JSON_LIMITS = { maxBytes: MAX_CHALLENGE_BYTES, maxDepth: 32 };

const refuse = (code: RefusalCode, reason: string, extra: Record<string, unknown> = {}): Refusal => ({
  kind: "refuse",
  code,
  reason,
  extra,
});

/** Step 1: the 402 itself. */
export function readChallenge(parsed: ChallengeParse): Refusal | Readable {
  return parsed.ok
    ? { kind: "readable", challenge: parsed.challenge }
    : refuse("challenge_unreadable", parsed.reason);
}

/** Step 2: payees, pinned terms, budgets, the per-request cap and the signer, in that order. */
export function decide<Signer>(input: DecisionInput<Signer>): Refusal | Pay<Signer> {
  if (input.payees.length === 0)
    return refuse("payee_unknown", `no payee is configured for ${input.host} and its manifest named none`);
  const selection = selectRequirement(input.challenge.accepts, { ...input.terms, payTo: input.payees });
  if (!selection.ok) {
    const first = selection.violations[0];
    return {
      ...refuse("terms_rejected", selection.reason),
      ...(first ? { refusedTerm: { term: first.term, offered: first.offered } } : {}),
    };
  }
  const price = selection.price;
  const priceJson = price.toString();
  if (input.budgets.length === 0 && input.budgetsAtSigner !== true)
    return refuse("no_budget", "no budget covers this request, and nothing is paid without one", {
      price: priceJson,
    });
  const cap = perRequestCap(input.budgets);
  if (cap && price > cap.cap)
    return refuse(
      "price_above_cap",
      `price ${formatUsdc(price)} is above the per-request cap ${formatUsdc(cap.cap)} of budget ${cap.budget}`,
      { price: priceJson, budget: { name: cap.budget, per_request_max: cap.cap.toString() } },
    );
  if (input.signer === undefined)
    return refuse("no_signer", "no wallet is configured (STELLAR_SECRET or X_PAYMENT_CMD)", {
      price: priceJson,
    });
  return {
    kind: "pay",
    challenge: input.challenge,
    requirement: selection.requirement,
    price,
    budgets: [...input.budgets],
    signer: input.signer,
  };
}

/** Step 3: the reservation, made in every matching budget at once, or the reason it was not. */
export function afterReservation<Payment>(
  r: Reservation<Payment>,
  price: bigint,
): Refusal | { kind: "reserved"; payment: Payment } {
  const priceJson = price.toString();
  switch (r.kind) {
    case "reserved":
      return r;
    case "unavailable":
      return refuse("budget_unavailable", `budgets cannot be checked, so nothing is paid: ${r.reason}`, {
        price: priceJson,
      });
    case "denied": {
      const d = r.denial;
      return {
        ...refuse(
          "budget_exceeded",
          `budget ${d.budget} (${d.period}) allows ${formatUsdc(d.limit)}, ${formatUsdc(d.spent)} is already used, the price is ${formatUsdc(d.price)}`,
          {
            price: priceJson,
            budget: {
              name: d.budget,
              period: d.period,
              limit: d.limit.toString(),
              spent: d.spent.toString(),
            },
          },
        ),
        budgetDenied: d.budget,
      };
    }
  }
}

/** What a refusal writes into the request's record (log line and metrics). */
export function refusalRecord(r: Refusal): Partial<RequestRecord> {
  return {
    outcome: "refused",
    errorCode: r.code,
    reason: r.reason,
    ...(r.budgetDenied !== undefined ? { budgetDenied: r.budgetDenied } : {}),
    ...(r.refusedTerm !== undefined ? { refusedTerm: r.refusedTerm } : {}),
  };
}

/**
 * The refusal's body: the upstream's 402 JSON, re-read within bounds, with `proxy` added. A
 * hostile body (too deep to serialise again, not JSON, not an object) is dropped and the body
 * becomes ours alone.
 */
export function refusalBody(challengeBody: Buffer, r: Refusal): Buffer {
  let json: Record<string, unknown> = {};
  const kept = readBoundedJson(challengeBody.toString("utf8"), CHALLENGE_JSON_LIMITS);
  if (kept.ok && typeof kept.value === "object" && kept.value !== null && !Array.isArray(kept.value))
    json = kept.value as Record<string, unknown>;
  json.proxy = { code: r.code, reason: r.reason, ...r.extra };
  return Buffer.from(JSON.stringify(json));
}
