/**
 * Rate limiting per upstream host: a token bucket (`ratePerSecond`, `burst`), optionally
 * adaptive (AIMD, as TCP congestion control: the rate is multiplied by `decreaseFactor` on a
 * 429, never below `floorPerSecond`, the bucket shrinking in proportion while the rate is below
 * its start, and grows by `increasePerSecond` at most once per
 * `increaseIntervalMs` of successes, never above `ceilingPerSecond`). A 429's `Retry-After`
 * pauses the host in both modes: no token is handed out before it ends.
 *
 * `acquire` never blocks: it answers `ok` (send now), `wait` (a slot is reserved `waitMs`
 * from now; the caller schedules the send) or `reject` (the wait would pass `maxWaitMs`; the app
 * gets 429 from the proxy with `Retry-After: retryAfterSeconds`). Waits get up to `jitterRatio`
 * of one token interval (1/rate) extra so callers released together do not hit the host together
 * (whole milliseconds: at 0.1 it acts below 100/s; above that, slots are under 1 ms apart anyway). Pure: the clock and the
 * random source are arguments; `snapshot` gives the state for metrics.
 *
 * A token taken for a wait is spent even if the caller gives up (the app went away): the
 * bucket errs toward sending less, never more. Slots are handed out in order; a send never
 * overtakes one promised before it, jitter included.
 *
 * @example
 * const l = new HostRateLimiter("api.stoka.space:443", { ...DEFAULT_RATE_LIMIT, ratePerSecond: 2, burst: 1, jitterRatio: 0 }, 0);
 * l.acquire(0, Math.random)   // → { kind: "ok" }
 * l.acquire(0, Math.random)   // → { kind: "wait", waitMs: 500 }
 * l.onThrottled(10, 30_000)   // a 429 with Retry-After: 30
 * l.acquire(20, Math.random)  // → { kind: "reject", retryAfterSeconds: 31, … } (maxWaitMs 5 000)
 *
 * A slot promised before a pause began is not recalled: when its wait ends, the caller asks
 * `pausedForMs` and, if the host is now paused, waits again (within its own maximum) or answers
 * 429 itself.
 */
export interface AdaptiveSettings {
  floorPerSecond: number;
  ceilingPerSecond: number;
  /** 0 < factor < 1; 0.5 halves the rate on a 429. */
  decreaseFactor: number;
  increasePerSecond: number;
  increaseIntervalMs: number;
  /** 429s for requests sent before the last decrease do not decrease again within this time. */
  decreaseCooldownMs: number;
}

export interface RateLimitSettings {
  ratePerSecond: number;
  /** Bucket size: sends allowed at once after a quiet period (≥ 1). */
  burst: number;
  /** The longest wait handed out; past it the request is rejected. */
  maxWaitMs: number;
  /** 0..1: a wait gets up to jitterRatio × one token interval (1000 / rate ms) extra, within maxWaitMs. */
  jitterRatio: number;
  /** The longest pause a `Retry-After` may impose on the host. */
  retryAfterCapMs: number;
  adaptive?: AdaptiveSettings;
}

export const DEFAULT_RATE_LIMIT: RateLimitSettings = {
  ratePerSecond: 20,
  burst: 40,
  maxWaitMs: 5_000,
  jitterRatio: 0.1,
  retryAfterCapMs: 60_000,
};

export const DEFAULT_ADAPTIVE: AdaptiveSettings = {
  floorPerSecond: 0.5,
  ceilingPerSecond: 20,
  decreaseFactor: 0.5,
  increasePerSecond: 1,
  increaseIntervalMs: 1_000,
  decreaseCooldownMs: 1_000,
};

export type Acquire =
  | { kind: "ok" }
  | { kind: "wait"; waitMs: number }
  | { kind: "reject"; retryAfterSeconds: number; reason: string };

export interface RateLimiterSnapshot {
  host: string;
  mode: "token_bucket" | "adaptive";
  ratePerSecond: number;
  /** Tokens at hand once every promised slot is taken (counted at `max(now, last promised slot)`). */
  tokens: number;
  /** Time until the last promised slot (0 when nobody waits). */
  queuedForMs: number;
  /** Time left of a `Retry-After` pause (0 when none). */
  pausedForMs: number;
  acquired: number;
  waited: number;
  rejected: number;
  throttled: number;
  /** Sum of the waits handed out. */
  waitMsTotal: number;
  decreases: number;
  increases: number;
}

/** Settings that cannot work are refused up front (config load turns this into an error). */
export function checkRateLimitSettings(s: RateLimitSettings): string | null {
  if (!(s.ratePerSecond > 0) || !Number.isFinite(s.ratePerSecond)) return "rate must be a positive number";
  if (!(s.burst >= 1) || !Number.isFinite(s.burst)) return "burst must be at least 1";
  if (!(s.maxWaitMs >= 0) || !Number.isFinite(s.maxWaitMs)) return "max wait must be 0 or more";
  if (!(s.jitterRatio >= 0 && s.jitterRatio <= 1)) return "jitter must be between 0 and 1";
  if (!(s.retryAfterCapMs >= 0) || !Number.isFinite(s.retryAfterCapMs))
    return "Retry-After cap must be 0 or more";
  const a = s.adaptive;
  if (a) {
    if (!(a.floorPerSecond > 0)) return "adaptive floor must be positive";
    if (!(a.ceilingPerSecond >= a.floorPerSecond)) return "adaptive ceiling must be at least the floor";
    if (!(s.ratePerSecond >= a.floorPerSecond && s.ratePerSecond <= a.ceilingPerSecond))
      return "the starting rate must lie between the adaptive floor and ceiling";
    if (!(a.decreaseFactor > 0 && a.decreaseFactor < 1)) return "decrease factor must be between 0 and 1";
    if (!(a.increasePerSecond >= 0)) return "increase must be 0 or more";
    if (!(a.increaseIntervalMs >= 0) || !(a.decreaseCooldownMs >= 0)) return "intervals must be 0 or more";
  }
  return null;
}

function unit(random: () => number): number {
  const r = random();
  return Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
}

export class HostRateLimiter {
  private tokens: number;
  /**
   * Tokens are counted up to this instant. It runs ahead of the clock while slots are promised
   * to waiting requests or a `Retry-After` pause lasts: the next slot comes after it.
   */
  private countedToMs: number;
  private pausedUntilMs = Number.NEGATIVE_INFINITY;
  private rate: number;
  private lastDecreaseMs = Number.NEGATIVE_INFINITY;
  private lastIncreaseMs: number;
  private readonly counts = {
    acquired: 0,
    waited: 0,
    rejected: 0,
    throttled: 0,
    waitMsTotal: 0,
    decreases: 0,
    increases: 0,
  };

  constructor(
    readonly host: string,
    private readonly settings: RateLimitSettings,
    startMs: number,
  ) {
    const bad = checkRateLimitSettings(settings);
    if (bad) throw new RangeError(`rate limit for ${host}: ${bad}`);
    this.tokens = settings.burst;
    this.countedToMs = startMs;
    this.rate = settings.ratePerSecond;
    this.lastIncreaseMs = startMs;
  }

  /**
   * The bucket's size now: the configured burst, scaled down with the rate once the adaptive
   * rate has fallen below its start, so a host that taught us 10/s is not sent a burst sized
   * for 10 000/s after a quiet minute.
   */
  private burstNow(): number {
    const s = this.settings;
    if (!s.adaptive || this.rate >= s.ratePerSecond) return s.burst;
    return Math.max(1, (s.burst * this.rate) / s.ratePerSecond);
  }

  /** Counts the tokens earned up to `toMs` (the bucket never holds more than `burst`). */
  private advanceTo(toMs: number): void {
    if (toMs <= this.countedToMs) return;
    this.tokens = Math.min(this.burstNow(), this.tokens + ((toMs - this.countedToMs) * this.rate) / 1000);
    this.countedToMs = toMs;
  }

  /** Milliseconds from `nowMs` until one whole token is there, after every slot already promised. */
  private waitForToken(nowMs: number): number {
    const from = Math.max(nowMs, this.countedToMs);
    const missing = Math.max(0, 1 - this.tokens);
    return Math.ceil(from - nowMs + (missing * 1000) / this.rate);
  }

  acquire(nowMs: number, random: () => number): Acquire {
    this.advanceTo(nowMs);
    const wait = this.waitForToken(nowMs);
    if (wait <= 0) {
      this.tokens -= 1;
      this.counts.acquired += 1;
      return { kind: "ok" };
    }
    if (wait > this.settings.maxWaitMs) {
      this.counts.rejected += 1;
      const retryAfterSeconds = Math.max(1, Math.ceil(wait / 1000));
      return {
        kind: "reject",
        retryAfterSeconds,
        reason: `${this.host} is rate limited (${formatRate(this.rate)}/s); the next slot is ${wait} ms away, more than the ${this.settings.maxWaitMs} ms the proxy waits`,
      };
    }
    // Jitter spreads one token interval, not the whole wait: the wait includes every slot
    // promised ahead, and jitter on that would push the next slot further each time (the queue
    // grew geometrically and a 1000/s host got ~300/s under 64 waiters).
    const extra = Math.floor((1000 / this.rate) * this.settings.jitterRatio * unit(random));
    const waitMs = Math.min(this.settings.maxWaitMs, wait + extra);
    // The token is taken at the send's own (jittered) time, so the slots promised stay in
    // order and no window ever holds more than burst + rate × its length.
    this.advanceTo(nowMs + waitMs);
    this.tokens -= 1;
    this.counts.acquired += 1;
    this.counts.waited += 1;
    this.counts.waitMsTotal += waitMs;
    return { kind: "wait", waitMs };
  }

  /**
   * The host answered 429 (`retryAfterMs` from its `Retry-After`, already parsed, or null).
   * Returns the new rate when it changed (for a log line), else null.
   */
  onThrottled(nowMs: number, retryAfterMs: number | null): { ratePerSecond: number } | null {
    this.advanceTo(nowMs);
    this.counts.throttled += 1;
    let changed: { ratePerSecond: number } | null = null;
    const a = this.settings.adaptive;
    if (a && nowMs - this.lastDecreaseMs >= a.decreaseCooldownMs) {
      const next = Math.max(a.floorPerSecond, this.rate * a.decreaseFactor);
      this.lastDecreaseMs = nowMs;
      this.lastIncreaseMs = nowMs;
      // No burst right after a 429: the next send waits for a token at the new rate.
      this.tokens = Math.min(this.tokens, 0);
      if (next !== this.rate) {
        this.rate = next;
        this.counts.decreases += 1;
        changed = { ratePerSecond: next };
      }
    }
    if (retryAfterMs !== null && retryAfterMs > 0) {
      const until = nowMs + Math.min(retryAfterMs, this.settings.retryAfterCapMs);
      this.pausedUntilMs = Math.max(this.pausedUntilMs, until);
      // No token is earned during the pause: the first send after it waits for one.
      this.advanceTo(until);
      this.tokens = Math.min(this.tokens, 0);
    }
    return changed;
  }

  /** The host answered without throttling. Returns the new rate when it grew, else null. */
  onSuccess(nowMs: number): { ratePerSecond: number } | null {
    const a = this.settings.adaptive;
    if (!a || this.rate >= a.ceilingPerSecond || nowMs - this.lastIncreaseMs < a.increaseIntervalMs)
      return null;
    this.advanceTo(nowMs);
    this.rate = Math.min(a.ceilingPerSecond, this.rate + a.increasePerSecond);
    this.lastIncreaseMs = nowMs;
    this.counts.increases += 1;
    return { ratePerSecond: this.rate };
  }

  /** Time left of a `Retry-After` pause (0 when none): checked again before a delayed send. */
  pausedForMs(nowMs: number): number {
    return Math.max(0, this.pausedUntilMs - nowMs);
  }

  snapshot(nowMs: number): RateLimiterSnapshot {
    const tokens =
      nowMs > this.countedToMs
        ? Math.min(this.burstNow(), this.tokens + ((nowMs - this.countedToMs) * this.rate) / 1000)
        : this.tokens;
    return {
      host: this.host,
      mode: this.settings.adaptive ? "adaptive" : "token_bucket",
      ratePerSecond: this.rate,
      tokens,
      queuedForMs: Math.max(0, this.countedToMs - nowMs),
      pausedForMs: this.pausedForMs(nowMs),
      ...this.counts,
    };
  }
}

function formatRate(r: number): string {
  return Number.isInteger(r) ? String(r) : r.toFixed(2);
}

/**
 * One limiter per upstream host (the paid host's upstream authority, `host:port`), created on
 * first use from `settingsFor`; a host it answers null for is not limited. The hosts are the
 * configured paid hosts, so the map (and the metric labels) stay bounded.
 */
export class RateLimiters {
  private readonly byHost = new Map<string, HostRateLimiter | null>();

  constructor(
    private readonly settingsFor: (host: string) => RateLimitSettings | null,
    private readonly now: () => number,
  ) {}

  for(host: string): HostRateLimiter | null {
    const key = host.toLowerCase();
    if (!this.byHost.has(key)) {
      const s = this.settingsFor(key);
      this.byHost.set(key, s ? new HostRateLimiter(key, s, this.now()) : null);
    }
    return this.byHost.get(key) ?? null;
  }

  snapshots(nowMs: number): RateLimiterSnapshot[] {
    return [...this.byHost.values()].flatMap((l) => (l ? [l.snapshot(nowMs)] : []));
  }
}
