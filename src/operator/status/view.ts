/**
 * The status page's view model: plain data, already aggregated, that `renderStatusPage` turns
 * into HTML without computing anything money-related itself. `buildStatusView` (build-view.ts)
 * makes one from ledger-like payment summaries and budget numbers. Amounts are bigint atomic
 * units; times are epoch milliseconds (UTC).
 */

/** A payment's latest state, as the ledger records it (plus `refused` for refusals kept elsewhere). */
export type PaymentStateName =
  "reserved" | "sent" | "settled" | "rejected" | "indeterminate" | "failed" | "refused";

export interface BudgetLimitView {
  /** The period's label: `hour`, `day`, `week`, `month`, or `rolling_3600s`. */
  period: string;
  limit: bigint;
  /** Settled (and indeterminate) spend in the current period, without open reservations. */
  spent: bigint;
  /** Reserved for payments whose outcome is not known yet. */
  reserved: bigint;
  /** spent / limit and reserved / limit in basis points (10 000 = the whole limit), clamped. */
  spentBasisPoints: number;
  reservedBasisPoints: number;
  /** (spent + reserved) / limit in basis points, not clamped (can exceed 10 000). */
  usedBasisPoints: number;
  /** spent + reserved exceeds the limit (possible: indeterminate payments stay counted). */
  overLimit: boolean;
  /** When a calendar period ends (UTC); absent for rolling windows. */
  resetsAtMs?: number;
}

export interface BudgetView {
  name: string;
  perRequestMax?: bigint;
  limits: BudgetLimitView[];
}

export interface SpendRow {
  /** The route name or client name. */
  key: string;
  /** settled + indeterminate: what may have left the wallet. */
  total: bigint;
  /** Of which indeterminate (outcome unknown until reconciled). */
  indeterminate: bigint;
  payments: number;
}

export interface SpendTable {
  /** Inclusive start of the window (UTC midnight, or the first of the month at UTC midnight). */
  sinceMs: number;
  byRoute: SpendRow[];
  byClient: SpendRow[];
  total: bigint;
  payments: number;
}

export interface PaymentView {
  id: string;
  state: PaymentStateName;
  amount: bigint;
  route: string;
  client: string;
  tx: string | null;
  /** When the payment started (its first ledger row). */
  atMs: number;
  reason: string | null;
}

export interface RecentPayments {
  /** At most `cap` rows: indeterminate first (newest first), then the rest (newest first). */
  rows: PaymentView[];
  cap: number;
  /** Every indeterminate payment in the input, shown or not. */
  indeterminateCount: number;
  indeterminateAmount: bigint;
  /** Payments in the input that did not fit under the cap. */
  omitted: number;
}

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerView {
  name: string;
  state: BreakerState;
  sinceMs?: number;
  reason?: string;
}

export interface KillSwitchView {
  on: boolean;
  sinceMs?: number;
  reason?: string;
}

export interface CaView {
  /** SHA-256 of the certificate's DER, upper-case hex pairs joined by colons. */
  fingerprintSha256: string;
  subject?: string;
  notAfterMs?: number;
  /** Where the certificate file lives, if known (shown in the trust instructions). */
  certPath?: string;
}

/** A payment waiting for a person's approval (operator/approvals/registry.ts). */
export interface ApprovalView {
  id: string;
  amount: bigint;
  route: string;
  client: string;
  method: string;
  host: string;
  /** Without the query. */
  path: string;
  budgets: string[];
  reasons: string[];
  requestedAtMs: number;
  deadlineMs: number;
}

export interface StatusView {
  generatedAtMs: number;
  /** Short facts about this proxy (network, budget store, version), shown as a list. */
  facts: { label: string; value: string }[];
  budgets: BudgetView[];
  /** Why the budget store could not be read for this page (then `budgets` may be empty). */
  budgetsUnavailable?: string;
  today: SpendTable;
  month: SpendTable;
  payments: RecentPayments;
  /** Absent until circuit breakers exist; the section is left out. */
  breakers?: BreakerView[];
  /** Absent until the kill switch exists; the section is left out. */
  killSwitch?: KillSwitchView;
  /** Absent when interception is off (no CA). */
  ca?: CaView;
  /** Payments waiting for approval in this process; absent = the section is left out. */
  approvals?: ApprovalView[];
}
