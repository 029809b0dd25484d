import type {
  BreakerView,
  BudgetLimitView,
  BudgetView,
  CaView,
  KillSwitchView,
  PaymentStateName,
  PaymentView,
  RecentPayments,
  SpendRow,
  SpendTable,
  StatusView,
} from "./view.js";

/**
 * Builds the status page's view from plain arrays: one summary per payment (its latest state)
 * and each budget's numbers as the budget store reports them. Pure: the clock is passed in, so
 * "today" and "this month" (UTC calendar days and months, like the budgets' own buckets) are
 * decided by the caller's time, never the machine's time zone.
 */

/** One payment, as the ledger's latest row for it says (amount in atomic units). */
export interface PaymentSummaryInput {
  id: string;
  state: PaymentStateName;
  amount: bigint;
  route: string;
  client: string;
  /** When the payment started (its first ledger row). */
  startedAtMs: number;
  tx: string | null;
  reason?: string | null;
  /** The wallet that paid (absent: not recorded, rows of earlier versions). */
  payer?: string;
}

export interface BudgetLimitInput {
  /** The period's label (`day`, `rolling_3600s`, …). */
  period: string;
  limit: bigint;
  /** The store's current use of this limit: spent plus open reservations. */
  used: bigint;
  /** End of the current calendar bucket, when the period is a calendar one. */
  resetsAtMs?: number;
}

export interface BudgetInput {
  name: string;
  perRequestMax?: bigint;
  /** Money reserved for this budget by payments still open (the store reports it per budget). */
  reserved: bigint;
  limits: BudgetLimitInput[];
}

export interface StatusInput {
  payments: readonly PaymentSummaryInput[];
  budgets: readonly BudgetInput[];
  /** The budget store could not be read (unreachable, state lost): said on the page. */
  budgetsUnavailable?: string;
  facts?: { label: string; value: string }[];
  breakers?: BreakerView[];
  killSwitch?: KillSwitchView;
  ca?: CaView;
}

export const RECENT_PAYMENTS_CAP = 50;

/** States whose amount may have left the wallet: the same rule as `stoka-proxy spend`. */
const SPEND_STATES: ReadonlySet<PaymentStateName> = new Set(["settled", "indeterminate"]);

export function utcDayStart(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

export function utcMonthStart(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

const FULL = 10_000n;

/** part / whole in basis points, not clamped; a zero limit counts any use as the whole. */
function basisPoints(part: bigint, whole: bigint): number {
  if (part <= 0n) return 0;
  if (whole <= 0n) return Number(FULL);
  return Number((part * FULL) / whole);
}

export function budgetLimitView(reservedForBudget: bigint, input: BudgetLimitInput): BudgetLimitView {
  const used = input.used < 0n ? 0n : input.used;
  // The store counts open reservations inside `used`; the budget-wide reservation can only
  // be part of this limit's use, never more than it.
  const reserved = reservedForBudget < 0n ? 0n : reservedForBudget > used ? used : reservedForBudget;
  const spent = used - reserved;
  const spentBasisPoints = Math.min(Number(FULL), basisPoints(spent, input.limit));
  const reservedBasisPoints = Math.min(Number(FULL) - spentBasisPoints, basisPoints(reserved, input.limit));
  return {
    period: input.period,
    limit: input.limit,
    spent,
    reserved,
    spentBasisPoints,
    reservedBasisPoints,
    usedBasisPoints: basisPoints(used, input.limit),
    overLimit: used > input.limit,
    ...(input.resetsAtMs === undefined ? {} : { resetsAtMs: input.resetsAtMs }),
  };
}

function budgetView(b: BudgetInput): BudgetView {
  return {
    name: b.name,
    ...(b.perRequestMax === undefined ? {} : { perRequestMax: b.perRequestMax }),
    limits: b.limits.map((l) => budgetLimitView(b.reserved, l)),
  };
}

function sortedRows(map: Map<string, SpendRow>): SpendRow[] {
  return [...map.values()].sort((a, b) =>
    a.total === b.total ? (a.key < b.key ? -1 : a.key > b.key ? 1 : 0) : a.total > b.total ? -1 : 1,
  );
}

/** Spend per route and per client of the payments that started at or after `sinceMs`. */
export function spendSince(payments: readonly PaymentSummaryInput[], sinceMs: number): SpendTable {
  const byRoute = new Map<string, SpendRow>();
  const byClient = new Map<string, SpendRow>();
  let total = 0n;
  let count = 0;
  const add = (map: Map<string, SpendRow>, key: string, p: PaymentSummaryInput) => {
    const row = map.get(key) ?? { key, total: 0n, indeterminate: 0n, payments: 0 };
    row.total += p.amount;
    if (p.state === "indeterminate") row.indeterminate += p.amount;
    row.payments += 1;
    map.set(key, row);
  };
  for (const p of payments) {
    // No upper bound: a payment stamped ahead of this clock (another replica's) still counts.
    if (!SPEND_STATES.has(p.state) || p.startedAtMs < sinceMs) continue;
    add(byRoute, p.route, p);
    add(byClient, p.client, p);
    total += p.amount;
    count += 1;
  }
  return { sinceMs, byRoute: sortedRows(byRoute), byClient: sortedRows(byClient), total, payments: count };
}

const newestFirst = (a: PaymentSummaryInput, b: PaymentSummaryInput) =>
  b.startedAtMs - a.startedAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function toPaymentView(p: PaymentSummaryInput): PaymentView {
  return {
    id: p.id,
    state: p.state,
    amount: p.amount,
    route: p.route,
    client: p.client,
    tx: p.tx,
    atMs: p.startedAtMs,
    reason: p.reason ?? null,
    ...(p.payer ? { payer: p.payer } : {}),
  };
}

/**
 * The rows the page lists: every indeterminate payment first (they need an operator, however
 * old), newest first, then the latest other payments, up to `cap` rows in all.
 */
export function recentPayments(
  payments: readonly PaymentSummaryInput[],
  cap = RECENT_PAYMENTS_CAP,
): RecentPayments {
  const indeterminate = payments.filter((p) => p.state === "indeterminate").sort(newestFirst);
  const others = payments.filter((p) => p.state !== "indeterminate").sort(newestFirst);
  const rows = [...indeterminate, ...others].slice(0, Math.max(0, cap)).map(toPaymentView);
  return {
    rows,
    cap,
    indeterminateCount: indeterminate.length,
    indeterminateAmount: indeterminate.reduce((sum, p) => sum + p.amount, 0n),
    omitted: payments.length - rows.length,
  };
}

export function buildStatusView(
  input: StatusInput,
  now: () => number,
  options: { recentCap?: number } = {},
): StatusView {
  const nowMs = now();
  return {
    generatedAtMs: nowMs,
    facts: input.facts ?? [],
    budgets: input.budgets.map(budgetView),
    ...(input.budgetsUnavailable === undefined ? {} : { budgetsUnavailable: input.budgetsUnavailable }),
    today: spendSince(input.payments, utcDayStart(nowMs)),
    month: spendSince(input.payments, utcMonthStart(nowMs)),
    payments: recentPayments(input.payments, options.recentCap ?? RECENT_PAYMENTS_CAP),
    ...(input.breakers === undefined ? {} : { breakers: input.breakers }),
    ...(input.killSwitch === undefined ? {} : { killSwitch: input.killSwitch }),
    ...(input.ca === undefined ? {} : { ca: input.ca }),
  };
}
