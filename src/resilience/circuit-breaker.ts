/**
 * A circuit breaker per route, on payment failures (a second 402, an indeterminate outcome):
 *
 *   closed ──N failures within windowMs──▶ open ──coolDownMs──▶ half_open ──probe settles──▶ closed
 *                                           ▲                        │
 *                                           └──── probe fails ───────┘
 *
 * - closed: every payment may go ahead; failures are kept (their times, at most N) and counted
 *   within a sliding window. Successes do not erase failures: the window does.
 * - open: no payment on the route; `check` answers why and for how long (the proxy answers
 *   503 JSON with the reason and `Retry-After`).
 * - half_open: exactly one probe payment is let through; the others are refused as if open.
 *   The probe's success closes the circuit, its failure re-opens it for another cool-down. A
 *   probe that ends without paying (refused by a budget, the app went away) frees the slot
 *   (`recordNeutral`); one that never reports frees it after `probeTimeoutMs`.
 *
 * Reports carry the ticket `check` handed out, so a payment admitted before the circuit opened
 * cannot close it later, and only the probe decides a half-open circuit. Every state change is
 * returned as a `Transition` for the log line and the metrics. Pure: the clock is an argument.
 *
 * @example
 * const b = new CircuitBreaker("store", { failureThreshold: 2, windowMs: 60_000, coolDownMs: 30_000, probeTimeoutMs: 60_000 });
 * const t = b.check(0);                 // → { allow: true, ticket: { id: 1, probe: false } }
 * b.recordFailure(t.ticket, 1, "second 402: insufficient funds");
 * b.recordFailure(b.check(2).ticket, 2, "indeterminate: upstream_5xx"); // → { from: "closed", to: "open", … }
 * b.check(3)      // → { allow: false, state: "open", retryAfterSeconds: 30, reason: "…" }
 * b.check(30_002) // → { allow: true, ticket: { id: 3, probe: true } } (half-open probe)
 */
export type CircuitState = "closed" | "open" | "half_open";

export const CIRCUIT_STATES: readonly CircuitState[] = ["closed", "open", "half_open"];

export interface CircuitSettings {
  /** Failures within `windowMs` that open the circuit (≥ 1). */
  failureThreshold: number;
  windowMs: number;
  coolDownMs: number;
  /** A probe that has not reported after this long no longer holds the half-open slot. */
  probeTimeoutMs: number;
}

export const DEFAULT_CIRCUIT: CircuitSettings = {
  failureThreshold: 5,
  windowMs: 60_000,
  coolDownMs: 30_000,
  probeTimeoutMs: 120_000,
};

export interface CircuitTicket {
  readonly id: number;
  readonly probe: boolean;
}

export type CircuitCheck =
  | { allow: true; ticket: CircuitTicket; transition?: Transition }
  | {
      allow: false;
      state: "open" | "half_open";
      reason: string;
      retryAfterSeconds: number;
      transition?: Transition;
    };

export interface Transition {
  route: string;
  from: CircuitState;
  to: CircuitState;
  atMs: number;
  reason: string;
}

export interface CircuitSnapshot {
  route: string;
  state: CircuitState;
  /** Failures inside the window (closed) or that opened the circuit (open). */
  recentFailures: number;
  /** When an open circuit lets a probe through. */
  openUntilMs: number | null;
  lastFailure: string | null;
  probeInFlight: boolean;
  opened: number;
}

/** What a payment's outcome means to the breaker (failures are the route's fault, not the app's). */
export type PaymentVerdict = "success" | "failure" | "neutral";

/**
 * settled → success; a second 402 or an indeterminate outcome → failure; everything else
 * (a refusal before signing, a 4xx such as 404 on PUT, a retry that never connected) says
 * nothing about whether paying on the route works.
 */
export function verdictFor(outcome: {
  outcome: "settled" | "settled_no_receipt" | "rejected" | "refused" | "indeterminate" | "failed";
  secondChallenge?: boolean;
}): PaymentVerdict {
  if (outcome.outcome === "settled" || outcome.outcome === "settled_no_receipt") return "success";
  if (outcome.outcome === "indeterminate") return "failure";
  if (outcome.outcome === "rejected" && outcome.secondChallenge) return "failure";
  return "neutral";
}

export function checkCircuitSettings(s: CircuitSettings): string | null {
  if (!Number.isInteger(s.failureThreshold) || s.failureThreshold < 1)
    return "failure threshold must be a whole number ≥ 1";
  for (const [k, v] of [
    ["window", s.windowMs],
    ["cool-down", s.coolDownMs],
    ["probe timeout", s.probeTimeoutMs],
  ] as const)
    if (!(v > 0) || !Number.isFinite(v)) return `${k} must be a positive number`;
  return null;
}

export class CircuitBreaker {
  private state: CircuitState = "closed";
  private failures: number[] = [];
  private openUntilMs = 0;
  private lastFailure: string | null = null;
  private nextTicket = 1;
  /** Tickets handed out while closed start at this id; older tickets are from before a trip. */
  private closedSince = 1;
  private probe: { id: number; sinceMs: number } | null = null;
  private opened = 0;

  constructor(
    readonly route: string,
    private readonly settings: CircuitSettings,
  ) {
    const bad = checkCircuitSettings(settings);
    if (bad) throw new RangeError(`circuit breaker for ${route}: ${bad}`);
  }

  private move(to: CircuitState, atMs: number, reason: string): Transition {
    const t: Transition = { route: this.route, from: this.state, to, atMs, reason };
    this.state = to;
    return t;
  }

  private trip(atMs: number, reason: string): Transition {
    this.openUntilMs = atMs + this.settings.coolDownMs;
    this.probe = null;
    this.opened += 1;
    return this.move("open", atMs, reason);
  }

  private ticket(probe: boolean): CircuitTicket {
    return { id: this.nextTicket++, probe };
  }

  private denied(state: "open" | "half_open", nowMs: number, transition?: Transition): CircuitCheck {
    const retryAfterSeconds =
      state === "open"
        ? Math.max(1, Math.ceil((this.openUntilMs - nowMs) / 1000))
        : Math.max(1, Math.ceil(this.settings.coolDownMs / 1000));
    const why = this.lastFailure ? `; last failure: ${this.lastFailure}` : "";
    const reason =
      state === "open"
        ? `payments on route ${this.route} are paused after ${this.settings.failureThreshold} payment failures within ${Math.round(this.settings.windowMs / 1000)} s${why}`
        : `payments on route ${this.route} are paused: one probe payment is testing the route${why}`;
    return { allow: false, state, reason, retryAfterSeconds, ...(transition ? { transition } : {}) };
  }

  check(nowMs: number): CircuitCheck {
    let transition: Transition | undefined;
    if (this.state === "open") {
      if (nowMs < this.openUntilMs) return this.denied("open", nowMs);
      transition = this.move("half_open", nowMs, "cool-down over: one probe payment may go ahead");
    }
    if (this.state === "half_open") {
      if (this.probe && nowMs - this.probe.sinceMs < this.settings.probeTimeoutMs)
        return this.denied("half_open", nowMs, transition);
      const ticket = this.ticket(true);
      this.probe = { id: ticket.id, sinceMs: nowMs };
      return { allow: true, ticket, ...(transition ? { transition } : {}) };
    }
    return { allow: true, ticket: this.ticket(false) };
  }

  recordSuccess(ticket: CircuitTicket, nowMs: number): Transition | null {
    if (this.state === "half_open" && this.probe?.id === ticket.id) {
      this.probe = null;
      this.failures = [];
      this.closedSince = this.nextTicket;
      return this.move("closed", nowMs, "the probe payment settled");
    }
    return null;
  }

  recordFailure(ticket: CircuitTicket, nowMs: number, reason: string): Transition | null {
    if (this.state === "half_open") {
      if (this.probe?.id !== ticket.id) return null;
      this.lastFailure = reason;
      return this.trip(nowMs, `the probe payment failed: ${reason}`);
    }
    if (this.state === "open") return null;
    if (ticket.id < this.closedSince) return null;
    this.lastFailure = reason;
    this.failures.push(nowMs);
    const from = nowMs - this.settings.windowMs;
    this.failures = this.failures.filter((t) => t > from).slice(-this.settings.failureThreshold);
    if (this.failures.length >= this.settings.failureThreshold)
      return this.trip(
        nowMs,
        `${this.failures.length} payment failures within ${Math.round(this.settings.windowMs / 1000)} s; last: ${reason}`,
      );
    return null;
  }

  /** The payment ended without saying anything about the route; a probe frees its slot. */
  recordNeutral(ticket: CircuitTicket): void {
    if (this.state === "half_open" && this.probe?.id === ticket.id) this.probe = null;
  }

  /** Whatever the outcome, in one call (the wiring maps its outcome with `verdictFor`). */
  record(ticket: CircuitTicket, verdict: PaymentVerdict, nowMs: number, reason: string): Transition | null {
    if (verdict === "success") return this.recordSuccess(ticket, nowMs);
    if (verdict === "failure") return this.recordFailure(ticket, nowMs, reason);
    this.recordNeutral(ticket);
    return null;
  }

  snapshot(nowMs: number): CircuitSnapshot {
    const state = this.state === "open" && nowMs >= this.openUntilMs ? "half_open" : this.state;
    const from = nowMs - this.settings.windowMs;
    return {
      route: this.route,
      state,
      recentFailures:
        this.state === "closed" ? this.failures.filter((t) => t > from).length : this.failures.length,
      openUntilMs: this.state === "open" ? this.openUntilMs : null,
      lastFailure: this.lastFailure,
      probeInFlight: this.probe !== null && nowMs - this.probe.sinceMs < this.settings.probeTimeoutMs,
      opened: this.opened,
    };
  }
}

/** One breaker per route name (bounded: route names come from a fixed table), made on first use. */
export class CircuitBreakers {
  private readonly byRoute = new Map<string, CircuitBreaker>();

  constructor(private readonly settingsFor: (route: string) => CircuitSettings) {}

  for(route: string): CircuitBreaker {
    let b = this.byRoute.get(route);
    if (!b) {
      b = new CircuitBreaker(route, this.settingsFor(route));
      this.byRoute.set(route, b);
    }
    return b;
  }

  snapshots(nowMs: number): CircuitSnapshot[] {
    return [...this.byRoute.values()].map((b) => b.snapshot(nowMs));
  }
}
