import { parseRetryAfter } from "./retry-after.js";
import type { HeaderValue } from "./retry-after.js";

/**
 * Retries for attempts that carry no payment (the first send of a request to a paid host, or
 * any request the app did not pay itself). Pure: the clock and the random source are arguments,
 * and the answer is a delay the caller schedules; nothing here sleeps.
 *
 * Retryable: a connection that never opened (nothing reached the server), 502, 503, 504 and
 * 429. Not retryable: a timeout or a connection dropped after the request was written (the
 * server may have acted on it), any other status, and every attempt that carries a payment
 * header — a paid attempt is never retried here (see paid-resend.ts for the one safe exception,
 * which resends the same header and never signs a new one).
 *
 * Delay: exponential backoff with full jitter, `random() × min(maxDelayMs, baseDelayMs × 2^n)`
 * for the n-th retry (n from 0), and never less than the server's `Retry-After`. Bounded by
 * `maxAttempts` (sends in all, the first included) and `maxTotalMs` (from the first send to
 * the start of the next one); a `Retry-After` past either bound ends the retries and the app
 * gets the upstream's own answer, `Retry-After` included.
 *
 * @example
 * const policy = { ...DEFAULT_RETRY_POLICY, maxAttempts: 3 };
 * nextUnpaidRetry(policy, {
 *   failure: { kind: "status", status: 503, retryAfter: "2" },
 *   attemptsMade: 1, firstSentAtMs: 0, nowMs: 100, carriesPayment: false, random: () => 0.5,
 * }); // → { retry: true, delayMs: 2000, reason: "upstream answered 503 (Retry-After 2 s)" }
 */
export interface RetryPolicy {
  /** Sends in all, the first one included; 1 = never retry. */
  maxAttempts: number;
  /** Backoff base for the first retry. */
  baseDelayMs: number;
  /** Ceiling of one backoff step (before jitter). */
  maxDelayMs: number;
  /** From the first send to the start of the last retry. */
  maxTotalMs: number;
  /** The longest `Retry-After` honoured; longer asks end the retries. */
  retryAfterCapMs: number;
}

/** Three sends within 10 s: enough for a blip, short enough for an app waiting on an answer. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 3,
  baseDelayMs: 200,
  maxDelayMs: 5_000,
  maxTotalMs: 10_000,
  retryAfterCapMs: 10_000,
};

/** What an attempt ended with, as the HTTP client reports it. */
export type AttemptFailure =
  /** The connection never opened: nothing reached the server. */
  | { kind: "connect" }
  /** The request was written and no answer came in time. */
  | { kind: "timeout" }
  /** The connection broke after the request was written. */
  | { kind: "dropped" }
  | { kind: "status"; status: number; retryAfter?: HeaderValue };

export type RetryDecision =
  { retry: true; delayMs: number; reason: string } | { retry: false; reason: string };

export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** Header names that carry an x402 payment (v1 and stoka: X-PAYMENT; v2: PAYMENT-SIGNATURE). */
export const PAYMENT_HEADER_NAMES: readonly string[] = ["x-payment", "payment-signature"];

/** Whether a request's headers carry a payment (any casing, any value, even empty). */
export function carriesPayment(headers: Readonly<Record<string, unknown>>): boolean {
  // A loop, not keys().some(): every request to a paid host asks (no array per request).
  for (const k in headers) {
    if (Object.hasOwn(headers, k) && PAYMENT_HEADER_NAMES.includes(k.toLowerCase())) return true;
  }
  return false;
}

/** Whether the failure alone is one an unpaid attempt may retry (ignoring the bounds). */
export function isRetryableFailure(f: AttemptFailure): boolean {
  if (f.kind === "connect") return true;
  if (f.kind === "status") return RETRYABLE_STATUSES.has(f.status);
  return false;
}

/** Methods a server may receive twice with the effect of once (RFC 9110 §9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "OPTIONS",
  "TRACE",
  "PUT",
  "DELETE",
]);

/**
 * Whether a wallet-signed request (no payment, `Authorization: Stellar …`) may be sent again,
 * with a fresh challenge and signature, after `failure` (docs/operations.md, Retries): when
 * the connection never opened nothing reached the server, so always; after an answer asking
 * for a retry (429, 502, 503, 504) the server may have acted, so only for idempotent methods
 * (DELETE an object, GET the usage). A POST (profile, queue ack) is sent again only when
 * nothing was sent; otherwise its answer goes back to the app as it came. The challenge fetch
 * itself creates nothing that matters (an unused challenge expires) and is retried as any
 * unpaid attempt.
 *
 * @example
 * maySendSignedAgain("DELETE", { kind: "status", status: 503 }); // → true
 * maySendSignedAgain("POST", { kind: "status", status: 503 }); // → false
 * maySendSignedAgain("POST", { kind: "connect" }); // → true
 */
export function maySendSignedAgain(method: string, failure: AttemptFailure): boolean {
  if (failure.kind === "connect") return true;
  return IDEMPOTENT_METHODS.has(method.toUpperCase()) && isRetryableFailure(failure);
}

/** Full jitter (backoff "n" counts retries from 0): uniform in [0, min(max, base × 2^n)). */
export function fullJitterDelay(
  backoff: Pick<RetryPolicy, "baseDelayMs" | "maxDelayMs">,
  n: number,
  random: () => number,
): number {
  const ceiling = Math.min(backoff.maxDelayMs, backoff.baseDelayMs * 2 ** Math.min(Math.max(n, 0), 30));
  const r = random();
  const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1 - Number.EPSILON) : 0;
  return Math.floor(unit * ceiling);
}

function describe(f: AttemptFailure): string {
  if (f.kind === "connect") return "the connection to the upstream failed";
  if (f.kind === "timeout") return "the upstream did not answer in time";
  if (f.kind === "dropped") return "the connection dropped after the request was sent";
  return `upstream answered ${f.status}`;
}

export interface RetryInput {
  failure: AttemptFailure;
  /** Sends made so far for this request (1 after the first). */
  attemptsMade: number;
  firstSentAtMs: number;
  nowMs: number;
  /** Whether the attempt that failed carried a payment header. */
  carriesPayment: boolean;
  random: () => number;
}

export function nextUnpaidRetry(policy: RetryPolicy, input: RetryInput): RetryDecision {
  const { failure } = input;
  const what = describe(failure);
  if (input.carriesPayment) return { retry: false, reason: `${what}; a paid attempt is never retried` };
  if (!isRetryableFailure(failure)) return { retry: false, reason: `${what}; not retryable` };
  if (input.attemptsMade >= policy.maxAttempts)
    return { retry: false, reason: `${what}; ${input.attemptsMade} of ${policy.maxAttempts} attempts made` };

  let delayMs = fullJitterDelay(policy, input.attemptsMade - 1, input.random);
  let reason = what;
  if (failure.kind === "status" && failure.retryAfter !== undefined) {
    const ra = parseRetryAfter(failure.retryAfter, input.nowMs, policy.retryAfterCapMs);
    if (ra?.exceedsCap) {
      return {
        retry: false,
        reason: `${what}; its Retry-After is longer than ${Math.ceil(policy.retryAfterCapMs / 1000)} s`,
      };
    }
    if (ra) {
      delayMs = Math.max(delayMs, ra.delayMs);
      reason = `${what} (Retry-After ${Math.ceil(ra.delayMs / 1000)} s)`;
    }
  }
  const elapsed = Math.max(0, input.nowMs - input.firstSentAtMs);
  if (elapsed + delayMs > policy.maxTotalMs) {
    return {
      retry: false,
      reason: `${what}; waiting ${delayMs} ms would pass the ${policy.maxTotalMs} ms retry budget`,
    };
  }
  return { retry: true, delayMs, reason };
}

/** Per-route overrides on top of the defaults (config: `resilience.retry` and its `routes`). */
export function retryPolicyFor(
  defaults: RetryPolicy,
  perRoute: Readonly<Record<string, Partial<RetryPolicy>>>,
  route: string,
): RetryPolicy {
  const own = Object.prototype.hasOwnProperty.call(perRoute, route) ? perRoute[route] : undefined;
  if (own === undefined) return defaults;
  const out = { ...defaults };
  for (const [k, v] of Object.entries(own ?? {}) as [keyof RetryPolicy, number | undefined][])
    if (v !== undefined) out[k] = v;
  return out;
}
