import { formatUsdc } from "../../stellar/amount.js";

/**
 * What the notifier can tell an operator: stable event names (receivers switch on them), a
 * severity, a dedup key (identical events within the dedup window are sent once) and a JSON
 * payload. Payloads carry names, ids and amounts only — never a URL, a header or a secret —
 * and amounts as `{ atomic: "<digits>", usdc: "<decimal> USDC" }` (atomic text, never a float).
 * Pure.
 */
export const EVENT_NAMES = [
  "budget.threshold",
  "payment.indeterminate",
  "payment.refused_terms",
  "reconcile.mismatch",
  "breaker.open",
  "killswitch.on",
  "approval.requested",
] as const;
export type EventName = (typeof EVENT_NAMES)[number];

export const SEVERITIES = ["info", "warning", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface NotificationEvent {
  name: EventName;
  severity: Severity;
  /** Same key within the dedup window = the same event, sent once. */
  dedupKey: string;
  occurredAtMs: number;
  /** One line a person can read (chat receivers show it as is). */
  summary: string;
  data: JsonObject;
  /** budget.threshold only: the threshold crossed, in percent of the limit (rules filter on it). */
  thresholdPercent?: number;
}

export function amountJson(atomic: bigint): JsonObject {
  return { atomic: atomic.toString(), usdc: formatUsdc(atomic) };
}

const iso = (ms: number) => new Date(ms).toISOString();

export interface BudgetThresholdFacts {
  budget: string;
  /** Period label: `day`, `month`, `rolling_3600s`, … */
  period: string;
  /** Start of the calendar bucket; null for a rolling window. */
  periodStartMs: number | null;
  limit: bigint;
  used: bigint;
  thresholdPercent: number;
  atMs: number;
}

/** 100 % and above means payments matching the budget are now refused: critical. */
export function budgetThresholdEvent(f: BudgetThresholdFacts): NotificationEvent {
  const usedBp = f.limit > 0n ? Number((f.used * 10_000n) / f.limit) : 10_000;
  return {
    name: "budget.threshold",
    severity: f.thresholdPercent >= 100 ? "critical" : "warning",
    dedupKey: `budget.threshold|${f.budget}|${f.period}|${f.periodStartMs ?? "rolling"}|${f.thresholdPercent}`,
    occurredAtMs: f.atMs,
    summary: `budget ${f.budget} reached ${f.thresholdPercent} % of its ${f.period} limit (${formatUsdc(f.used)} of ${formatUsdc(f.limit)})`,
    thresholdPercent: f.thresholdPercent,
    data: {
      budget: f.budget,
      period: f.period,
      period_start: f.periodStartMs === null ? null : iso(f.periodStartMs),
      threshold_percent: f.thresholdPercent,
      used_percent: usedBp / 100,
      used: amountJson(f.used),
      limit: amountJson(f.limit),
    },
  };
}

export interface IndeterminatePaymentFacts {
  paymentId: string;
  route: string;
  client: string;
  amount: bigint;
  reason: string;
  upstreamStatus: number | null;
  tx: string | null;
  atMs: number;
}

export function paymentIndeterminateEvent(f: IndeterminatePaymentFacts): NotificationEvent {
  return {
    name: "payment.indeterminate",
    severity: "critical",
    dedupKey: `payment.indeterminate|${f.paymentId}`,
    occurredAtMs: f.atMs,
    summary: `payment ${f.paymentId} (${formatUsdc(f.amount)}, route ${f.route}, client ${f.client}) has an unknown outcome: run stoka-proxy reconcile`,
    data: {
      payment_id: f.paymentId,
      route: f.route,
      client: f.client,
      amount: amountJson(f.amount),
      reason: f.reason,
      upstream_status: f.upstreamStatus,
      tx: f.tx,
      action:
        "run `stoka-proxy reconcile` (then `--resolve`); if the numbers cannot decide, check whether the paid call took effect. The amount stays counted against its budgets until then.",
    },
  };
}

/** Which pinned term a 402 asked to break. */
export type RefusedTerm = "pay_to" | "asset" | "network" | "scheme" | "fees" | "timeout" | "other";

export interface RefusedTermsFacts {
  /** The paid host (an authority, `name` or `name:port`), never the request URL. */
  host: string;
  route: string;
  client: string;
  term: RefusedTerm;
  /** What the 402 asked for (a G… account, a C… contract, a network id): public values. */
  offered: string;
  reason: string;
  price: bigint | null;
  atMs: number;
}

/** A 402 asking to pay someone or something not trusted may be an attack or a misconfiguration. */
export function paymentRefusedTermsEvent(f: RefusedTermsFacts): NotificationEvent {
  return {
    name: "payment.refused_terms",
    severity: "warning",
    dedupKey: `payment.refused_terms|${f.host}|${f.term}|${f.offered}`,
    occurredAtMs: f.atMs,
    summary: `refused to pay ${f.host}: its 402 asked for an untrusted ${f.term} (${f.offered})`,
    data: {
      host: f.host,
      route: f.route,
      client: f.client,
      term: f.term,
      offered: f.offered,
      reason: f.reason,
      price: f.price === null ? null : amountJson(f.price),
    },
  };
}

export interface ReconcileMismatchFacts {
  /** UTC day, YYYY-MM-DD. */
  date: string;
  ledgerSettled: bigint;
  ledgerIndeterminate: bigint;
  upstream: bigint;
  atMs: number;
}

export function reconcileMismatchEvent(f: ReconcileMismatchFacts): NotificationEvent {
  const difference = f.upstream - f.ledgerSettled;
  return {
    name: "reconcile.mismatch",
    severity: "critical",
    dedupKey: `reconcile.mismatch|${f.date}|${f.ledgerSettled}|${f.ledgerIndeterminate}|${f.upstream}`,
    occurredAtMs: f.atMs,
    summary: `reconcile ${f.date}: stoka counts ${formatUsdc(f.upstream)}, the ledger ${formatUsdc(f.ledgerSettled)} settled + ${formatUsdc(f.ledgerIndeterminate)} unknown`,
    data: {
      date: f.date,
      ledger_settled: amountJson(f.ledgerSettled),
      ledger_indeterminate: amountJson(f.ledgerIndeterminate),
      upstream: amountJson(f.upstream),
      difference: amountJson(difference),
    },
  };
}

export interface BreakerOpenFacts {
  breaker: string;
  reason: string;
  atMs: number;
}

export function breakerOpenEvent(f: BreakerOpenFacts): NotificationEvent {
  return {
    name: "breaker.open",
    severity: "critical",
    dedupKey: `breaker.open|${f.breaker}`,
    occurredAtMs: f.atMs,
    summary: `circuit breaker ${f.breaker} opened: ${f.reason}`,
    data: { breaker: f.breaker, reason: f.reason },
  };
}

export interface KillSwitchFacts {
  reason: string;
  atMs: number;
}

export function killSwitchOnEvent(f: KillSwitchFacts): NotificationEvent {
  return {
    name: "killswitch.on",
    severity: "critical",
    // Each switch-on is an operator's act: one notification each (a breaker's flapping is
    // what the dedup window is for).
    dedupKey: `killswitch.on|${f.atMs}`,
    occurredAtMs: f.atMs,
    summary: `kill switch on: nothing is paid (${f.reason})`,
    data: { reason: f.reason },
  };
}

/**
 * The JSON body a destination receives. `id` is the same on every retry (receivers dedupe on
 * it); `event` is the stable name to switch on.
 */
export function payloadOf(id: string, e: NotificationEvent): string {
  return JSON.stringify({
    id,
    event: e.name,
    severity: e.severity,
    occurred_at: iso(e.occurredAtMs),
    summary: e.summary,
    data: e.data,
  });
}

export interface ApprovalRequestedFacts {
  approvalId: string;
  paymentId: string;
  route: string;
  client: string;
  method: string;
  /** The paid host (an authority) and the path without its query: never the full URL. */
  host: string;
  path: string;
  amount: bigint;
  budgets: string[];
  reasons: string[];
  requestedAtMs: number;
  deadlineMs: number;
}

/** A payment waits for a person: approve or deny before the deadline, or it is refused. */
export function approvalRequestedEvent(f: ApprovalRequestedFacts): NotificationEvent {
  return {
    name: "approval.requested",
    severity: "warning",
    dedupKey: `approval.requested|${f.approvalId}`,
    occurredAtMs: f.requestedAtMs,
    summary: `payment of ${formatUsdc(f.amount)} (route ${f.route}, client ${f.client}) waits for approval until ${iso(f.deadlineMs)}: stoka-proxy approvals approve ${f.approvalId}`,
    data: {
      approval_id: f.approvalId,
      payment_id: f.paymentId,
      route: f.route,
      client: f.client,
      method: f.method,
      host: f.host,
      path: f.path,
      amount: amountJson(f.amount),
      budgets: f.budgets,
      reasons: f.reasons,
      requested_at: iso(f.requestedAtMs),
      deadline: iso(f.deadlineMs),
      action: `approve or deny on the status page, with \`stoka-proxy approvals approve|deny ${f.approvalId}\`, or POST /approvals/${f.approvalId}/approve|deny on the admin listener; past the deadline it is refused`,
    },
  };
}
