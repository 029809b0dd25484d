import { bucketStart, matchingBudgets } from "./budget.js";
import type { Budget, PaidHostEntry } from "../config/config.js";
import { paidHostsServing } from "../config/paid-hosts.js";
import type { LedgerRow, PaymentState } from "../ledger/entry.js";

/**
 * Which ledger payments count against which budgets, the way the proxy counted them when it
 * reserved: what rebuilds lost counters (`budgets restore`) and what tells a replica that its
 * ledger holds spend in a current period. Pure.
 */

/**
 * Spent or possibly spent: settled, indeterminate (unknown outcome stays counted) and still
 * open (reserved, or sent and waiting for the answer). Rejected and failed payments were
 * released; refusals never reach the ledger.
 */
export const COUNTED_STATES: readonly PaymentState[] = ["reserved", "sent", "settled", "indeterminate"];

export function isCounted(state: PaymentState): boolean {
  return COUNTED_STATES.includes(state);
}

/**
 * The host names a budget saw for a ledger row. The ledger keeps the upstream URL the proxy
 * sent to, while budgets match the paid host's name: every configured paid host (and the
 * gateway) whose upstream has that origin is a candidate. Two paid hosts on one upstream are
 * both candidates, so such a payment counts against the budgets of either: over-counting is
 * the safe side.
 */
export function hostCandidates(
  url: URL,
  paidHosts: readonly PaidHostEntry[],
  gatewayUpstream: URL,
): string[] {
  const out = new Set<string>(paidHostsServing(paidHosts, url).map((h) => h.host));
  if (gatewayUpstream.origin === url.origin) out.add(gatewayUpstream.hostname.toLowerCase());
  if (out.size === 0) out.add(url.hostname.replace(/^\[|\]$/g, "").toLowerCase());
  return [...out];
}

export interface SpendScope {
  budgets: readonly Budget[];
  paidHosts: readonly PaidHostEntry[];
  gatewayUpstream: URL;
}

/** Every budget whose match covers the payment under any candidate host. */
export function budgetsForRow(
  row: Pick<LedgerRow, "url" | "method" | "route" | "client">,
  scope: SpendScope,
): Budget[] {
  let url: URL;
  try {
    url = new URL(row.url);
  } catch {
    // Not a URL (the proxy never writes one): count it wherever method, route and client fit.
    return scope.budgets.filter((b) => {
      const { hosts: _h, paths: _p, ...rest } = b.match;
      return (
        matchingBudgets([{ ...b, match: rest }], {
          host: "",
          method: row.method,
          path: "",
          route: row.route,
          client: row.client,
        }).length > 0
      );
    });
  }
  const found = new Map<string, Budget>();
  for (const host of hostCandidates(url, scope.paidHosts, scope.gatewayUpstream)) {
    for (const b of matchingBudgets(scope.budgets, {
      host,
      method: row.method,
      path: url.pathname,
      route: row.route,
      client: row.client,
    }))
      found.set(b.name, b);
  }
  return scope.budgets.filter((b) => found.has(b.name));
}

/** The earliest start of any current period of these budgets; null when they have no limits. */
export function earliestCurrentStart(budgets: readonly Budget[], nowMs: number): number | null {
  let earliest: number | null = null;
  for (const b of budgets) {
    for (const l of b.limits) {
      const start =
        l.period.kind === "calendar" ? bucketStart(l.period.unit, nowMs) : nowMs - l.period.seconds * 1000;
      if (earliest === null || start < earliest) earliest = start;
    }
  }
  return earliest;
}
