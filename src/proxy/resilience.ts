import type { ResilienceOptions } from "../config/config.js";
import type { UpstreamAnswer } from "../http/upstream-client.js";
import { UpstreamError, UpstreamRateLimited } from "../http/upstream-client.js";
import type { UpstreamClient, UpstreamRequest } from "../http/upstream-client.js";
import type { Logger } from "../observability/logger.js";
import type { ProxyMetrics, ResilienceView } from "../observability/metrics.js";
import { CircuitBreakers } from "../resilience/circuit-breaker.js";
import type { Transition } from "../resilience/circuit-breaker.js";
import { IdempotencyRegistry } from "../resilience/idempotency.js";
import { PaymentSwitch } from "../resilience/payment-switch.js";
import type { SwitchChange } from "../resilience/payment-switch.js";
import { RateLimiters } from "../resilience/rate-limiter.js";
import type { HostRateLimiter } from "../resilience/rate-limiter.js";
import { parseRetryAfter } from "../resilience/retry-after.js";
import {
  RETRYABLE_STATUSES,
  carriesPayment,
  nextUnpaidRetry,
  retryPolicyFor,
} from "../resilience/retry-policy.js";
import type { AttemptFailure } from "../resilience/retry-policy.js";
import { routeName } from "../stoka/route-names.js";

/**
 * The resilience mechanisms of one running proxy (docs/architecture.md, Payments): their state
 * (rate limiters per upstream host, circuit breakers per route, the kill switch and dry run,
 * the idempotency registry) and the one piece of I/O they need, waiting. What to do is decided
 * by the pure code in src/resilience/; this file schedules it.
 *
 *   app ──▶ rate limiter (per host) ──ok/wait──▶ unpaid send ──connect error / 429 / 502-504──▶ backoff, again
 *               └─ wait > max ─▶ 429 rate_limited + Retry-After     (bounded: attempts, total time)
 */
/** Why a send may not go (nothing was sent). */
export interface Limited {
  retryAfterSeconds: number;
  reason: string;
}

/** `admitNow`: the slot is there; nothing to wait for. */
const ADMITTED = "admitted";

/** `admitNow`: the token is taken; the send waits `waitMs`, then any Retry-After pause. */
interface PendingAdmission {
  limiter: HostRateLimiter;
  maxWaitMs: number;
  waitMs: number;
}

export type UnpaidResult =
  | { kind: "response"; response: UpstreamAnswer }
  | { kind: "limited"; retryAfterSeconds: number; reason: string };

export class Resilience {
  readonly limiters: RateLimiters | null;
  readonly breakers: CircuitBreakers | null;
  readonly paymentSwitch: PaymentSwitch;
  readonly idempotency: IdempotencyRegistry | null;
  metrics: ProxyMetrics | undefined;

  constructor(
    readonly options: ResilienceOptions,
    payments: { stopped: boolean; dryRun: boolean },
    private readonly logger: Logger,
    private readonly now: () => number,
    private readonly random: () => number = Math.random,
  ) {
    const rl = options.rateLimit;
    this.limiters = rl ? new RateLimiters(() => rl, now) : null;
    const cb = options.breaker;
    this.breakers = cb
      ? new CircuitBreakers((route) => ({
          ...cb,
          ...(Object.prototype.hasOwnProperty.call(options.breakerRoutes, route)
            ? options.breakerRoutes[route]
            : {}),
        }))
      : null;
    this.paymentSwitch = new PaymentSwitch({ ...payments, atMs: now() });
    this.idempotency = options.idempotency ? new IdempotencyRegistry(options.idempotency) : null;
  }

  view(): ResilienceView {
    return {
      limiters: () => this.limiters?.snapshots(this.now()) ?? [],
      breakers: () => this.breakers?.snapshots(this.now()) ?? [],
      switchState: () => this.paymentSwitch.decide(),
      idempotency: () => this.idempotency?.snapshot(this.now()) ?? null,
    };
  }

  /** A breaker's state change: one log line and the metric. */
  noteTransition(t: Transition | null | undefined): void {
    if (!t) return;
    this.metrics?.circuitTransitions.inc({ route: t.route, to: t.to });
    const log = t.to === "open" ? this.logger.warn.bind(this.logger) : this.logger.info.bind(this.logger);
    log({ route: t.route, from: t.from, to: t.to, reason: t.reason }, "circuit breaker");
  }

  /** A switch flip: one log line each (who, why; never a token). */
  noteFlips(changes: SwitchChange[]): void {
    for (const c of changes)
      this.logger.warn({ switch: c.switch, on: c.on, by: c.by, reason: c.reason }, "payment switch flipped");
  }

  sleep(ms: number, gone: () => boolean): Promise<void> {
    if (ms <= 0 || gone()) return Promise.resolve();
    return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
  }

  /**
   * Waits for a slot of the host's rate limiter: `null` when the send may go, else why not.
   * A `Retry-After` pause that began while this request waited makes it wait again, within the
   * limiter's maximum.
   */
  admit(host: string, gone: () => boolean): Promise<Limited | null> {
    const now = this.admitNow(host);
    return now === ADMITTED ? Promise.resolve(null) : this.admitLater(now, gone);
  }

  /**
   * The slot when it is there at once (most sends: no await, no promise), else what the wait
   * needs. Takes the limiter's token either way: the wait must not take a second one.
   */
  admitNow(host: string): typeof ADMITTED | Limited | PendingAdmission {
    const limiter = this.limiters?.for(host);
    const rl = this.options.rateLimit;
    if (!limiter || !rl) return ADMITTED;
    const now = this.now();
    const a = limiter.acquire(now, this.random);
    if (a.kind === "reject") {
      this.metrics?.rateLimitRejections.inc({ host: limiter.host });
      return { retryAfterSeconds: a.retryAfterSeconds, reason: a.reason };
    }
    if (a.kind === "ok" && limiter.pausedForMs(now) <= 0) return ADMITTED;
    return { limiter, maxWaitMs: rl.maxWaitMs, waitMs: a.kind === "wait" ? a.waitMs : 0 };
  }

  /** The rest of `admitNow`'s answer: a rejection as it is, or the wait for the slot. */
  async admitLater(a: Limited | PendingAdmission, gone: () => boolean): Promise<Limited | null> {
    if (!("limiter" in a)) return a;
    const { limiter, maxWaitMs } = a;
    let waited = 0;
    if (a.waitMs > 0) {
      await this.sleep(a.waitMs, gone);
      waited += a.waitMs;
    }
    // Bounded: each pass waits out a pause, and the total stays within maxWaitMs.
    for (let pass = 0; pass < 4; pass++) {
      const paused = limiter.pausedForMs(this.now());
      if (paused <= 0) break;
      if (waited + paused > maxWaitMs) {
        this.metrics?.rateLimitRejections.inc({ host: limiter.host });
        return {
          retryAfterSeconds: Math.max(1, Math.ceil(paused / 1000)),
          reason: `${limiter.host} asked the proxy to wait (Retry-After) longer than the ${maxWaitMs} ms it waits`,
        };
      }
      await this.sleep(paused, gone);
      waited += paused;
    }
    if (waited > 0) this.metrics?.rateLimitWaits.observe({ host: limiter.host }, waited / 1000);
    return null;
  }

  /** The host's answer, for the adaptive rate: a 429 lowers it (and its Retry-After pauses the host). */
  observe(host: string, status: number, retryAfter: string | string[] | undefined): void {
    const limiter = this.limiters?.for(host);
    if (!limiter) return;
    const now = this.now();
    if (status === 429) {
      this.metrics?.rateLimitThrottles.inc({ host: limiter.host });
      const cap = this.options.rateLimit?.retryAfterCapMs ?? 0;
      const ra = parseRetryAfter(retryAfter, now, cap);
      const changed = limiter.onThrottled(now, ra ? ra.delayMs : null);
      if (changed)
        this.logger.info(
          { host: limiter.host, rate: changed.ratePerSecond },
          "rate limit lowered after a 429",
        );
    } else limiter.onSuccess(now);
  }

  /**
   * What the proxy itself sends to a paid host besides the app's requests (the manifest,
   * wallet-auth challenges, the usage): the same host's rate limiter and unpaid retries, so
   * everything the proxy sends there is counted alike. A send the limiter refuses throws
   * UpstreamRateLimited (nothing was sent).
   */
  limited(http: Pick<UpstreamClient, "send">): Pick<UpstreamClient, "send"> {
    return {
      send: async (req: UpstreamRequest) => {
        const r = await this.sendUnpaid(
          {
            host: req.url.host,
            route: routeName(req.method, req.url.pathname),
            headers: req.headers as Record<string, unknown>,
            gone: () => false,
          },
          () => http.send(req),
        );
        if (r.kind === "limited") throw new UpstreamRateLimited(r.reason, r.retryAfterSeconds);
        return r.response;
      },
    };
  }

  /**
   * The attempt that carries no payment: rate limited, and sent again on a connection that never
   * opened, 429, 502, 503 or 504 (retry-policy.ts), within the route's bounds. An answer that is
   * not retried (or the last one) is returned as it is, for the app or the payment flow; a
   * transport error that is not retried is thrown. A request the app itself sent with a payment
   * header is never sent twice.
   */
  async sendUnpaid(
    p: {
      host: string;
      route: string;
      headers: Record<string, unknown>;
      gone: () => boolean;
      /** Work before each attempt's slot is taken (a wallet-signed request: a fresh challenge, signed). */
      before?: () => Promise<void>;
      /** A further limit on what is sent again (wallet-signed: retry-policy.ts, maySendSignedAgain). */
      mayRetry?: (failure: AttemptFailure) => boolean;
    },
    send: () => Promise<UpstreamAnswer>,
  ): Promise<UnpaidResult> {
    const policy = retryPolicyFor(this.options.retry, this.options.retryRoutes, p.route);
    const paidByApp = carriesPayment(p.headers);
    const firstSentAtMs = this.now();
    // Bounded by policy.maxAttempts (nextUnpaidRetry refuses past it); the cap is a backstop.
    for (let attempt = 1; attempt <= Math.max(1, policy.maxAttempts); attempt++) {
      // Each await is a turn of the microtask queue: none for what is not there.
      if (p.before) await p.before();
      const now = this.admitNow(p.host);
      const limited = now === ADMITTED ? null : await this.admitLater(now, p.gone);
      if (limited) return { kind: "limited", ...limited };
      let failure: AttemptFailure;
      let response: UpstreamAnswer | undefined;
      let error: UpstreamError | undefined;
      try {
        response = await send();
        const status = response.statusCode ?? 0;
        this.observe(p.host, status, response.headers["retry-after"]);
        if (!RETRYABLE_STATUSES.has(status)) return { kind: "response", response };
        failure = { kind: "status", status, retryAfter: response.headers["retry-after"] };
      } catch (e) {
        if (!(e instanceof UpstreamError)) throw e;
        failure = { kind: e.kind };
        error = e;
        if (e.kind !== "connect") throw e;
      }
      const next = nextUnpaidRetry(policy, {
        failure,
        attemptsMade: attempt,
        firstSentAtMs,
        nowMs: this.now(),
        carriesPayment: paidByApp,
        random: this.random,
      });
      if (!next.retry || p.gone() || (p.mayRetry && !p.mayRetry(failure))) {
        if (response) return { kind: "response", response };
        throw error ?? new UpstreamError("connect", next.reason);
      }
      response?.resume();
      const reason = failure.kind === "status" ? `status_${failure.status}` : failure.kind;
      this.metrics?.retries.inc({ route: p.route, reason });
      this.logger.debug({ route: p.route, attempt, delay_ms: next.delayMs, reason: next.reason }, "retrying");
      await this.sleep(next.delayMs, p.gone);
    }
    throw new UpstreamError("connect", "retries exhausted");
  }
}
