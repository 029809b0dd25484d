import { Counter, Gauge, Histogram } from "prom-client";
import type { Registry } from "prom-client";
import { periodLabel } from "../budget/budget.js";
import type { Budget, BudgetLimit } from "../config/config.js";
import type { BudgetStoreWatcher } from "../budget/store.js";
import type { RequestRecord } from "./request-record.js";
import { ROUTE_NAMES } from "../stoka/route-names.js";
import { VERSION } from "./version.js";
import { CIRCUIT_STATES } from "../resilience/circuit-breaker.js";
import type { CircuitSnapshot } from "../resilience/circuit-breaker.js";
import type { RateLimiterSnapshot } from "../resilience/rate-limiter.js";
import type { SwitchDecision } from "../resilience/payment-switch.js";

/** What the resilience gauges read at scrape time (proxy/resilience.ts provides it). */
export interface ResilienceView {
  limiters: () => RateLimiterSnapshot[];
  breakers: () => CircuitSnapshot[];
  switchState: () => SwitchDecision;
  idempotency: () => { inFlight: number; indeterminate: number; capacity: number } | null;
}

/** Label values known before any traffic: their series start at 0 (docs/metrics.md). */
const UPSTREAM_ERROR_KINDS = ["connect", "timeout", "dropped", "status_5xx"] as const;
const TUNNEL_KINDS = ["blind", "mitm", "http"] as const;
const WALLET_AUTH_OUTCOMES = ["signed", "signed_after_retry", "rejected", "failed", "no_signer"] as const;

/**
 * The metric names are part of the product's interface (docs/metrics.md lists them); the
 * Grafana dashboard and its test read them. Labels are bounded: route *names*, configured
 * client and budget names, outcome and kind enums, never raw URLs or keys. Budget and
 * indeterminate gauges are read from the stores at scrape time, so replicas on one PostgreSQL (or
 * one Redis) all report the same truth.
 */
// Sub-millisecond (a refusal) to tens of seconds (a long-polled pop, a slow RPC).
/** What the budget gauges read at scrape time: the payment store (or Redis's budget engine). */
export interface BudgetReadings {
  used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint>;
  reserved(budget: Budget): Promise<bigint>;
  /** Redis: why its state is known lost, or null. */
  stateLost?(): string | null;
  watch?(watcher: BudgetStoreWatcher): void;
}

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
  readonly configReloads: Counter<"result">;
  readonly configLoadedAt: Gauge;
  readonly retries: Counter<"route" | "reason">;
  readonly rateLimitWaits: Histogram<"host">;
  readonly rateLimitRejections: Counter<"host">;
  readonly rateLimitThrottles: Counter<"host">;
  readonly circuitTransitions: Counter<"route" | "to">;
  readonly withheld: Counter<"route" | "reason">;
  readonly dryRunAtomic: Counter<"route">;
  readonly idempotencyConflicts: Counter<"state">;
  readonly resends: Counter<"route" | "status">;
  private readonly registers: Registry[];

  constructor(
    registry: Registry,
    /** The budgets in use; a function is read at each scrape (the configuration can be reloaded). */
    budgetsInUse: readonly Budget[] | (() => readonly Budget[]),
    store: BudgetReadings,
    /** Payments whose outcome is unknown now (the ledger's count, read at scrape time). */
    indeterminate: () => number | Promise<number>,
    private readonly asset: string,
    private readonly network: string,
    now: () => number = Date.now,
    /** The configured wallet-signed route names (config.walletAuth[].route). */
    walletAuthRoutes: readonly string[] = [],
  ) {
    const registers = [registry];
    const budgetsNow = typeof budgetsInUse === "function" ? budgetsInUse : () => budgetsInUse;
    this.registers = registers;
    this.retries = new Counter({
      name: "stoka_proxy_upstream_retries_total",
      help: "Unpaid attempts sent again, by route and what the previous one met (connect, status_429, status_502, status_503, status_504).",
      labelNames: ["route", "reason"],
      registers,
    });
    this.rateLimitWaits = new Histogram({
      name: "stoka_proxy_rate_limit_wait_seconds",
      help: "How long requests waited for a slot of their upstream host's rate limiter.",
      labelNames: ["host"],
      buckets: BUCKETS,
      registers,
    });
    this.rateLimitRejections = new Counter({
      name: "stoka_proxy_rate_limit_rejections_total",
      help: "Requests answered 429 rate_limited because the wait would pass the maximum.",
      labelNames: ["host"],
      registers,
    });
    this.rateLimitThrottles = new Counter({
      name: "stoka_proxy_rate_limit_throttled_total",
      help: "429 answers from the upstream host (each one lowers an adaptive rate).",
      labelNames: ["host"],
      registers,
    });
    this.circuitTransitions = new Counter({
      name: "stoka_proxy_circuit_transitions_total",
      help: "Circuit breaker state changes, by route and the state entered.",
      labelNames: ["route", "to"],
      registers,
    });
    this.withheld = new Counter({
      name: "stoka_proxy_payments_withheld_total",
      help: "402s handed back unpaid by the kill switch (stopped), dry run (dry_run) or an open circuit (circuit_open).",
      labelNames: ["route", "reason"],
      registers,
    });
    this.dryRunAtomic = new Counter({
      name: "stoka_proxy_dry_run_would_pay_atomic_total",
      help: "USDC atomic units dry run would have paid.",
      labelNames: ["route"],
      registers,
    });
    this.idempotencyConflicts = new Counter({
      name: "stoka_proxy_idempotency_conflicts_total",
      help: "Repeats of a request whose payment is in flight or indeterminate, answered 409 (in_flight, indeterminate), 422 (mismatch) or 503 (full).",
      labelNames: ["state"],
      registers,
    });
    this.resends = new Counter({
      name: "stoka_proxy_paid_resends_total",
      help: "The same payment header sent again after a 429 (or 503 with Retry-After) to the paid retry.",
      labelNames: ["route", "status"],
      registers,
    });
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

    this.configReloads = new Counter({
      name: "stoka_proxy_config_reloads_total",
      help: "Configuration reloads (SIGHUP, POST /admin/reload) by result: success, failure.",
      labelNames: ["result"],
      registers,
    });
    for (const result of ["success", "failure"]) this.configReloads.inc({ result }, 0);
    this.configLoadedAt = new Gauge({
      name: "stoka_proxy_config_last_load_timestamp_seconds",
      help: "When the configuration in use was loaded (at start, or by the last successful reload), Unix seconds.",
      registers,
    });
    this.configLoadedAt.set(now() / 1000);

    // Label sets known from the config start at zero, so alerts and panels see them at once.
    const denials = this.budgetDenials;
    const zeroDenials = () => {
      for (const b of budgetsNow()) denials.inc({ budget: b.name }, 0);
    };
    zeroDenials();
    new Gauge({
      name: "stoka_proxy_build_info",
      help: "Always 1; the labels say which stoka-proxy and which Node.js run.",
      labelNames: ["version", "node"],
      registers,
    }).set({ version: VERSION, node: process.version }, 1);
    for (const kind of UPSTREAM_ERROR_KINDS) this.upstreamErrors.inc({ kind }, 0);
    for (const kind of TUNNEL_KINDS) this.tunnels.inc({ kind }, 0);
    for (const route of ROUTE_NAMES) this.paidWithoutReceipt.inc({ route }, 0);
    for (const route of new Set(walletAuthRoutes))
      for (const outcome of WALLET_AUTH_OUTCOMES) this.walletAuth.inc({ route, outcome }, 0);
    new Gauge({
      name: "stoka_proxy_budget_limit_atomic",
      help: "Budget limits, atomic units.",
      labelNames: ["budget", "period"],
      registers,
      collect() {
        // Rebuilt at each scrape: a reload may have changed, added or removed budgets.
        this.reset();
        zeroDenials();
        for (const b of budgetsNow())
          for (const l of b.limits)
            this.set({ budget: b.name, period: periodLabel(l.period) }, Number(l.amount));
      },
    });
    new Gauge({
      name: "stoka_proxy_budget_spent_atomic",
      help: "Budget use (spent + reserved) in the current period, read from the budget store.",
      labelNames: ["budget", "period"],
      registers,
      async collect() {
        for (const b of budgetsNow()) {
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
        for (const b of budgetsNow()) {
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
      async collect() {
        try {
          this.set(await indeterminate());
        } catch {
          // store unreachable: keep the last value; /readyz reports the outage
        }
      },
    });
  }

  /** The resilience gauges, read from the running mechanisms at scrape time. */
  watchResilience(view: ResilienceView): void {
    const registers = this.registers;
    new Gauge({
      name: "stoka_proxy_rate_limit_rate",
      help: "Current rate of each upstream host's limiter, requests per second (adaptive: after its decreases).",
      labelNames: ["host", "mode"],
      registers,
      collect() {
        for (const l of view.limiters()) this.set({ host: l.host, mode: l.mode }, l.ratePerSecond);
      },
    });
    new Gauge({
      name: "stoka_proxy_rate_limit_queued_seconds",
      help: "How far ahead each host's limiter has promised slots (0 when nobody waits).",
      labelNames: ["host"],
      registers,
      collect() {
        for (const l of view.limiters()) this.set({ host: l.host }, l.queuedForMs / 1000);
      },
    });
    new Gauge({
      name: "stoka_proxy_circuit_state",
      help: "1 for each route's current circuit breaker state (closed, open, half_open), 0 for the others.",
      labelNames: ["route", "state"],
      registers,
      collect() {
        for (const b of view.breakers())
          for (const st of CIRCUIT_STATES) this.set({ route: b.route, state: st }, b.state === st ? 1 : 0);
      },
    });
    new Gauge({
      name: "stoka_proxy_payment_switch",
      help: "1 while the kill switch (switch=stopped) or dry run (switch=dry_run) is on.",
      labelNames: ["switch"],
      registers,
      collect() {
        const d = view.switchState();
        this.set({ switch: "stopped" }, d.kind === "stopped" ? 1 : 0);
        this.set({ switch: "dry_run" }, d.kind === "dry_run" ? 1 : 0);
      },
    });
    new Gauge({
      name: "stoka_proxy_idempotency_entries",
      help: "Requests whose payment blocks identical repeats, by state (in_flight, indeterminate).",
      labelNames: ["state"],
      registers,
      collect() {
        const s = view.idempotency();
        this.set({ state: "in_flight" }, s?.inFlight ?? 0);
        this.set({ state: "indeterminate" }, s?.indeterminate ?? 0);
      },
    });
  }

  /**
   * Label children by their label values, looked up once: prom-client hashes the label object on
   * every `inc`/`observe`, which showed in the per-request profile. Keys are bounded like the
   * labels are (route names, methods, status codes).
   */
  private readonly requestChildren = new Map<string, Counter.Internal>();
  private readonly durationChildren = new Map<
    string,
    { request: Histogram.Internal<"route">; upstream: Histogram.Internal<"route"> }
  >();

  private requestCounter(route: string, method: string, status: number): Counter.Internal {
    const key = `${route} ${method} ${status}`;
    let child = this.requestChildren.get(key);
    if (!child) {
      // Methods are the app's: past a bound, stop caching rather than grow (the labels still count).
      child = this.requests.labels({ route, method, code: String(status) });
      if (this.requestChildren.size < 1024) this.requestChildren.set(key, child);
    }
    return child;
  }

  private durations(route: string): {
    request: Histogram.Internal<"route">;
    upstream: Histogram.Internal<"route">;
  } {
    let children = this.durationChildren.get(route);
    if (!children) {
      children = {
        request: this.requestDuration.labels({ route }),
        upstream: this.upstreamDuration.labels({ route }),
      };
      this.durationChildren.set(route, children);
    }
    return children;
  }

  /** Everything a finished request contributes, from its record. */
  observe(r: RequestRecord, status: number, seconds: number): void {
    this.requestCounter(r.route, r.method, status).inc();
    const durations = this.durations(r.route);
    durations.request.observe(seconds);
    for (const s of r.upstreamSeconds ?? []) durations.upstream.observe(s);
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
