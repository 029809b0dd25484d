import { Counter, Gauge, Histogram } from "prom-client";
import type { Registry } from "prom-client";
import { periodLabel } from "../budget/budget.js";
import type { Budget } from "../config/config.js";
import type { BudgetStore } from "../budget/store.js";
import { ROUTE_NAMES } from "../stoka/route-names.js";
import type { RequestRecord } from "./request-record.js";
import { VERSION } from "./version.js";

/** Label values known before any traffic: their series start at 0 (docs/metrics.md). */
const UPSTREAM_ERROR_KINDS = ["connect", "timeout", "dropped", "status_5xx"] as const;
const TUNNEL_KINDS = ["blind", "mitm", "http"] as const;
const WALLET_AUTH_OUTCOMES = ["signed", "signed_after_retry", "rejected", "failed", "no_signer"] as const;

/**
 * The metric names are part of the product's interface (docs/metrics.md lists them); the
 * Grafana dashboard and its test read them. Labels are bounded: route *names*, configured
 * client and budget names, outcome and kind enums, never raw URLs or keys. Budget and
 * indeterminate gauges are read from the stores at scrape time, so replicas on one Redis all
 * report the same truth.
 */
// Sub-millisecond (a refusal) to tens of seconds (a long-polled pop, a slow RPC).
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60];

export class ProxyMetrics {
  readonly requests: Counter<"route" | "method" | "code">;
  readonly requestDuration: Histogram<"route">;
  readonly upstreamDuration: Histogram<"route">;
  readonly payments: Counter<"route" | "client" | "outcome">;
  readonly spent: Counter<"route" | "client" | "asset" | "network">;
  readonly signing: Histogram;
  readonly budgetDenials: Counter<"budget">;
  readonly walletAuth: Counter<"route" | "outcome">;
  readonly paidWithoutReceipt: Counter<"route">;
  readonly upstreamErrors: Counter<"kind">;
  readonly tunnels: Counter<"kind">;
  readonly budgetStoreLosses: Counter;

  constructor(
    registry: Registry,
    budgets: readonly Budget[],
    store: BudgetStore,
    /** Payments whose outcome is unknown now (the ledger's count, read at scrape time). */
    indeterminate: () => number,
    private readonly asset: string,
    private readonly network: string,
    now: () => number = Date.now,
    /** The configured wallet-signed route names (config.walletAuth[].route). */
    walletAuthRoutes: readonly string[] = [],
  ) {
    const registers = [registry];
    this.requests = new Counter({
      name: "stoka_proxy_requests_total",
      help: "Requests answered, by route name, method and status code.",
      labelNames: ["route", "method", "code"],
      registers,
    });
    this.requestDuration = new Histogram({
      name: "stoka_proxy_request_duration_seconds",
      help: "Time to answer a request, payment included.",
      labelNames: ["route"],
      buckets: BUCKETS,
      registers,
    });
    this.upstreamDuration = new Histogram({
      name: "stoka_proxy_upstream_duration_seconds",
      help: "Time until each upstream response's headers arrived.",
      labelNames: ["route"],
      buckets: BUCKETS,
      registers,
    });
    this.payments = new Counter({
      name: "stoka_proxy_payments_total",
      help: "Payment attempts by outcome: settled, rejected, refused, indeterminate, failed.",
      labelNames: ["route", "client", "outcome"],
      registers,
    });
    this.spent = new Counter({
      name: "stoka_proxy_spent_atomic_total",
      help: "USDC atomic units paid (settled payments).",
      labelNames: ["route", "client", "asset", "network"],
      registers,
    });
    this.signing = new Histogram({
      name: "stoka_proxy_payment_signing_seconds",
      help: "Time to create and sign one payment.",
      buckets: BUCKETS,
      registers,
    });
    this.budgetDenials = new Counter({
      name: "stoka_proxy_budget_denials_total",
      help: "Payments refused because a budget was full.",
      labelNames: ["budget"],
      registers,
    });
    this.walletAuth = new Counter({
      name: "stoka_proxy_wallet_auth_total",
      help: "Wallet-signed requests by outcome.",
      labelNames: ["route", "outcome"],
      registers,
    });
    this.paidWithoutReceipt = new Counter({
      name: "stoka_proxy_paid_without_receipt_total",
      help: "Paid requests answered 2xx without a payment receipt.",
      labelNames: ["route"],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: "stoka_proxy_upstream_errors_total",
      help: "Upstream failures by kind: connect, timeout, dropped, status_5xx.",
      labelNames: ["kind"],
      registers,
    });
    this.tunnels = new Counter({
      name: "stoka_proxy_tunnels_total",
      help: "CONNECT tunnels by kind: blind, mitm, http.",
      labelNames: ["kind"],
      registers,
    });

    this.budgetStoreLosses = new Counter({
      name: "stoka_proxy_budget_store_losses_total",
      help: "Times this replica found the shared budget store's state lost (Redis came back empty, flushed, evicted).",
      registers,
    });
    store.watch?.({ lost: () => this.budgetStoreLosses.inc(), restored: () => undefined });
    new Gauge({
      name: "stoka_proxy_budget_store_state_lost",
      help: "1 while the budget store's state is lost: nothing is paid until `stoka-proxy budgets restore` or `reset`.",
      registers,
      collect() {
        this.set(store.stateLost?.() ? 1 : 0);
      },
    });

    new Gauge({
      name: "stoka_proxy_build_info",
      help: "Always 1; the labels say which stoka-proxy and which Node.js run.",
      labelNames: ["version", "node"],
      registers,
    }).set({ version: VERSION, node: process.version }, 1);

    // Label sets known from the config start at zero, so alerts and panels see them at once.
    for (const b of budgets) this.budgetDenials.inc({ budget: b.name }, 0);
    for (const kind of UPSTREAM_ERROR_KINDS) this.upstreamErrors.inc({ kind }, 0);
    for (const kind of TUNNEL_KINDS) this.tunnels.inc({ kind }, 0);
    for (const route of ROUTE_NAMES) this.paidWithoutReceipt.inc({ route }, 0);
    for (const route of new Set(walletAuthRoutes))
      for (const outcome of WALLET_AUTH_OUTCOMES) this.walletAuth.inc({ route, outcome }, 0);
    const limit = new Gauge({
      name: "stoka_proxy_budget_limit_atomic",
      help: "Budget limits, atomic units.",
      labelNames: ["budget", "period"],
      registers,
    });
    for (const b of budgets)
      for (const l of b.limits)
        limit.set({ budget: b.name, period: periodLabel(l.period) }, Number(l.amount));
    new Gauge({
      name: "stoka_proxy_budget_spent_atomic",
      help: "Budget use (spent + reserved) in the current period, read from the budget store.",
      labelNames: ["budget", "period"],
      registers,
      async collect() {
        for (const b of budgets) {
          for (const l of b.limits) {
            try {
              this.set(
                { budget: b.name, period: periodLabel(l.period) },
                Number(await store.used(b, l, now())),
              );
            } catch {
              // store unreachable: keep the last value; /readyz reports the outage
            }
          }
        }
      },
    });
    new Gauge({
      name: "stoka_proxy_budget_reserved_atomic",
      help: "Money reserved for payments whose outcome is not known yet.",
      labelNames: ["budget"],
      registers,
      async collect() {
        for (const b of budgets) {
          try {
            this.set({ budget: b.name }, Number(await store.reserved(b)));
          } catch {
            // as above
          }
        }
      },
    });
    new Gauge({
      name: "stoka_proxy_indeterminate_payments",
      help: "Payments whose outcome is unknown (counted as spent until reconciled).",
      registers,
      collect() {
        this.set(indeterminate());
      },
    });
  }

  /** Everything a finished request contributes, from its record. */
  observe(r: RequestRecord, status: number, seconds: number): void {
    this.requests.inc({ route: r.route, method: r.method, code: String(status) });
    this.requestDuration.observe({ route: r.route }, seconds);
    for (const s of r.upstreamSeconds ?? []) this.upstreamDuration.observe({ route: r.route }, s);
    if (r.signingSeconds !== undefined) this.signing.observe(r.signingSeconds);
    if (r.upstreamError) this.upstreamErrors.inc({ kind: r.upstreamError });
    if (r.budgetDenied) this.budgetDenials.inc({ budget: r.budgetDenied });
    if (r.walletAuth && r.walletAuth !== "app_authorization")
      this.walletAuth.inc({ route: r.route, outcome: r.walletAuth });
    if (r.outcome) {
      const outcome = r.outcome === "settled_no_receipt" ? "settled" : r.outcome;
      this.payments.inc({ route: r.route, client: r.client, outcome });
      if (r.outcome === "settled_no_receipt") this.paidWithoutReceipt.inc({ route: r.route });
      if ((r.outcome === "settled" || r.outcome === "settled_no_receipt") && r.paidAtomic) {
        this.spent.inc(
          { route: r.route, client: r.client, asset: this.asset, network: this.network },
          Number(r.paidAtomic),
        );
      }
    }
  }
}
