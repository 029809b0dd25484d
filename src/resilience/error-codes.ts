/**
 * The error codes the resilience mechanisms answer with, and their HTTP status. The shared
 * ERROR_STATUS table in src/errors.ts holds them too (a unit test keeps the two alike).
 *
 * @example
 * RESILIENCE_ERROR_STATUS.circuit_open // → 503
 */
export const RESILIENCE_ERROR_STATUS = {
  /** The upstream host's rate limit would make the request wait too long (with Retry-After). */
  rate_limited: 429,
  /** The route's circuit breaker is open: nothing is paid on it for a cool-down (with Retry-After). */
  circuit_open: 503,
  /** The kill switch is on: the 402 goes back to the app, nothing is signed. */
  payments_stopped: 402,
  /** Dry run: the payment was decided, logged and metered, but not signed. */
  dry_run: 402,
  /** An identical request's payment is in flight or indeterminate (X-Stoka-Proxy-Payment-State). */
  payment_in_flight: 409,
  /** The app reused an Idempotency-Key for a different request. */
  idempotency_key_reused: 422,
  /** Every idempotency slot holds a live payment: nothing new is paid. */
  payments_in_flight_full: 503,
  /** The wallet's usage answer has a shape the reconciler cannot read. */
  usage_unreadable: 502,
} as const;

export type ResilienceErrorCode = keyof typeof RESILIENCE_ERROR_STATUS;
