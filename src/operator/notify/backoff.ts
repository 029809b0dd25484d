/**
 * When to try a webhook delivery again. Exponential backoff with full jitter (a delay drawn
 * uniformly from [0, min(cap, base · 2^(n−1))), so many proxies hitting one receiver spread
 * out), bounded by a number of attempts and a total time. A 429 or 503 with `Retry-After`
 * (RFC 9110 §10.2.3: delta-seconds or an HTTP-date) waits at least that long. Pure.
 */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** From the first attempt: no retry starts after this. */
  maxElapsedMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 6,
  baseDelayMs: 1_000,
  maxDelayMs: 60_000,
  maxElapsedMs: 10 * 60_000,
};

/** What one attempt came to. */
export type AttemptResult =
  | { kind: "status"; status: number; retryAfter?: string }
  | { kind: "timeout" }
  | { kind: "connection"; code: string }
  | { kind: "aborted" };

/** Upper bound of the delay after failed attempt number `attempt` (1-based). */
export function backoffCeilingMs(policy: RetryPolicy, attempt: number): number {
  const exp = Math.min(30, Math.max(0, attempt - 1));
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** exp);
}

/** Full jitter: `random()` in [0, 1) picks a delay in [0, ceiling). */
export function jitteredDelayMs(policy: RetryPolicy, attempt: number, random: () => number): number {
  const r = Math.min(Math.max(random(), 0), 1 - Number.EPSILON);
  return Math.floor(r * backoffCeilingMs(policy, attempt));
}

/** Retry-After as milliseconds from now, or null when absent or unreadable. */
export function parseRetryAfterMs(value: string | undefined, nowMs: number): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (/^[0-9]{1,9}$/.test(v)) return Number(v) * 1000;
  // HTTP-date: only the forms that carry a GMT zone, never a bare number Date.parse might read.
  if (!/GMT$/.test(v)) return null;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

export type Verdict = "delivered" | "retry" | "reject";

/**
 * 2xx: delivered. Timeouts, refused or reset connections, 408, 429 and 5xx: worth retrying.
 * Any other status (a 3xx is not followed, a 4xx will not change): rejected, not retried.
 */
export function verdict(result: AttemptResult): Verdict {
  if (result.kind === "aborted") return "reject";
  if (result.kind !== "status") return "retry";
  const s = result.status;
  if (s >= 200 && s < 300) return "delivered";
  if (s === 408 || s === 429 || s >= 500) return "retry";
  return "reject";
}

export type NextStep =
  | { kind: "delivered" }
  | { kind: "rejected" }
  | { kind: "retry"; delayMs: number }
  | { kind: "exhausted"; why: "attempts" | "time" };

export interface StepInput {
  policy: RetryPolicy;
  /** The attempt that just finished, 1-based. */
  attempt: number;
  firstAttemptAtMs: number;
  nowMs: number;
  result: AttemptResult;
  random: () => number;
}

export function nextStep(i: StepInput): NextStep {
  const v = verdict(i.result);
  if (v === "delivered") return { kind: "delivered" };
  if (v === "reject") return { kind: "rejected" };
  if (i.attempt >= i.policy.maxAttempts) return { kind: "exhausted", why: "attempts" };
  let delayMs = jitteredDelayMs(i.policy, i.attempt, i.random);
  if (i.result.kind === "status" && (i.result.status === 429 || i.result.status === 503)) {
    const after = parseRetryAfterMs(i.result.retryAfter, i.nowMs);
    if (after !== null) delayMs = Math.max(delayMs, after);
  }
  if (i.nowMs + delayMs > i.firstAttemptAtMs + i.policy.maxElapsedMs)
    return { kind: "exhausted", why: "time" };
  return { kind: "retry", delayMs };
}
