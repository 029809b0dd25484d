import type { Budget, BudgetLimit } from "../config/config.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import type { BudgetDenial } from "../budget/store.js";
import type { ChainCheck, LedgerFields, LedgerRow, PaymentState } from "../ledger/entry.js";
import type { PaymentSummary } from "../ledger/ledger.js";

/**
 * The proxy's money state behind one asynchronous interface: the hash-chained ledger and the
 * budget counters, kept in ONE database so that every budget step and the ledger row that
 * explains it are one transaction. SQLite (one replica, a file in the data directory) and
 * PostgreSQL (several replicas sharing budgets and one ledger) implement it.
 *
 * Rules every implementation keeps:
 * - `open` reserves the price in every matching budget and appends the `reserved` row, or does
 *   nothing at all (a denial names the limit that stopped it).
 * - `record` appends a later state together with its budget step (see payment-transitions.ts).
 * - Money whose outcome is unknown stays counted: leases and interruptions turn payments
 *   `indeterminate`, never free them; only a definite answer or reconciliation frees money.
 * - One chain: rows get their seq and prev_hash in commit order, whatever process writes them.
 * - Fail closed: when the database cannot be used, every call throws PaymentStoreUnavailable,
 *   which the proxy answers with 402 `budget_unavailable` before anything is signed.
 */

/** The fixed facts of one payment, the same in each of its rows. */
export type PaymentFacts = Omit<LedgerFields, "state" | "tx" | "upstreamStatus" | "reason" | "atMs">;

export interface OpenRequest {
  payment: PaymentFacts;
  /** Every budget that matches the payment: it must fit each of their limits. */
  budgets: readonly Budget[];
  nowMs: number;
  /** A reservation not finished by then turns indeterminate (never silently freed). */
  leaseUntilMs: number;
}

export type OpenResult = { ok: true; row: LedgerRow } | { ok: false; denial: BudgetDenial };

/** A later state of an opened payment; `reserved` is only ever written by `open`. */
export type LaterState = Exclude<PaymentState, "reserved">;

export interface StateChange {
  paymentId: string;
  state: LaterState;
  atMs: number;
  tx: string | null;
  upstreamStatus: number | null;
  reason: string | null;
}

export interface Resolution {
  paymentId: string;
  /** What reconciliation decided: charged → settled (stays spent); not charged → rejected (freed). */
  charged: boolean;
  atMs: number;
  reason: string;
}

/**
 * What restart recovery did: payments never handed to a socket (still `reserved`) are
 * released (`failed`); those whose header may have left (`sent`) are indeterminate.
 */
export interface RecoveredPayments {
  released: string[];
  indeterminate: string[];
}

export interface ChainHead {
  seq: number;
  hash: string;
}

export interface PaymentStore {
  /** redis: the ledger in this replica's SQLite file, the budgets in Redis (ledger-beside-budgets.ts). */
  readonly kind: "sqlite" | "postgres" | "redis";
  /** Reserve in every matching budget and append the `reserved` row: all or nothing. */
  open(request: OpenRequest): Promise<OpenResult>;
  /** Append a state change with its budget step (commit, release, hold), atomically. */
  record(change: StateChange): Promise<LedgerRow>;
  /** Reservations whose lease ran out become indeterminate (row + budget); their ids. */
  expireLeases(nowMs: number): Promise<string[]>;
  /**
   * Payments left open (reserved or sent) by a writer that stopped become indeterminate.
   * SQLite: every open payment of the file (one writer, which is starting). PostgreSQL: those
   * of writers that are gone, never those of a replica still running.
   */
  recoverInterrupted(nowMs: number): Promise<RecoveredPayments>;
  /**
   * Settles an indeterminate payment as reconciliation decided, with its row. Returns null
   * (and writes nothing) when the payment is not indeterminate any more.
   */
  resolveIndeterminate(resolution: Resolution): Promise<LedgerRow | null>;
  /** Ledger rows in chain order, from `sinceMs` (row time) on. */
  rows(sinceMs?: number): AsyncIterable<LedgerRow>;
  /** The latest row of every payment, with when it started and its first row. */
  latest(): Promise<PaymentSummary[]>;
  head(): Promise<ChainHead | null>;
  verify(): Promise<ChainCheck>;
  /** Current use (spent + reserved) of one limit of a budget at `nowMs`. */
  used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint>;
  /** Money reserved but not finished, per budget. */
  reserved(budget: Budget): Promise<bigint>;
  /** Payments whose latest state is indeterminate. */
  indeterminateCount(): Promise<number>;
  /** null when usable; otherwise why not (for /readyz), never with a password in it. */
  check(): Promise<string | null>;
  close(): Promise<void>;
}

/**
 * The database holding the money state cannot be used right now (unreachable, timed out,
 * shutting down). A BudgetStoreUnavailable, so the proxy's existing refusal path (402
 * `budget_unavailable`, nothing signed) covers it.
 */
export class PaymentStoreUnavailable extends BudgetStoreUnavailable {
  override readonly name = "PaymentStoreUnavailable";
}

/** A state change or resolution named a payment that was never opened. */
export class UnknownPayment extends Error {
  override readonly name = "UnknownPayment";
  constructor(readonly paymentId: string) {
    super(`no payment ${paymentId} was opened in this store`);
  }
}

/**
 * The largest amount either database stores exactly (SQLite INTEGER is 64-bit signed): one
 * bound for both, so a payment either store accepts the other accepts too.
 */
export const MAX_STORED_AMOUNT = 2n ** 63n - 1n;

export function checkAmount(amount: bigint): void {
  if (amount < 0n || amount > MAX_STORED_AMOUNT)
    throw new RangeError(`amount ${amount} is outside 0..${MAX_STORED_AMOUNT} atomic units`);
}

/** The fixed facts of a payment, from any of its rows. */
export function factsOf(row: PaymentFacts): PaymentFacts {
  return {
    paymentId: row.paymentId,
    requestId: row.requestId,
    client: row.client,
    route: row.route,
    method: row.method,
    url: row.url,
    amount: row.amount,
    payTo: row.payTo,
    asset: row.asset,
    network: row.network,
    payer: row.payer ?? null,
  };
}
