/**
 * One base error for everything a user can meet, with a stable `code`, and one table from
 * code to HTTP status (docs/architecture.md, Errors). Messages say what happened; `hint` says what to do next.
 */
export const ERROR_STATUS = {
  // start-up
  config_invalid: 500,
  sandbox_start_failed: 500,
  // the inbound request
  bad_request: 400,
  body_too_large: 413,
  loop_detected: 508,
  proxy_auth_required: 407,
  egress_denied: 403,
  client_auth_required: 401,
  expectation_failed: 417,
  transfer_coding_unsupported: 501,
  upgrade_unsupported: 501,
  // the client connection (answered before or instead of a request)
  malformed_request: 400,
  request_timeout: 408,
  headers_too_large: 431,
  too_many_connections: 503,
  shutting_down: 503,
  // the app left before its payment was signed or sent (nginx's 499; nobody reads the answer)
  client_gone: 499,
  // upstream, no money involved
  upstream_unreachable: 502,
  upstream_timeout: 504,
  // refused before signing: the app gets a 402 it can read (docs/architecture.md, The refusals, in order)
  challenge_unreadable: 402,
  payee_unknown: 402,
  terms_rejected: 402,
  no_budget: 402,
  price_above_cap: 402,
  budget_exceeded: 402,
  budget_unavailable: 402,
  no_signer: 402,
  // a person's approval (docs/operations.md, Approvals): refused before signing, released
  approval_denied: 402,
  approval_timeout: 402,
  // signing
  payment_create_failed: 502,
  payment_timeout: 502,
  signer_mismatch: 502,
  // a keyless sidecar and its signer (docs/security.md, Keyless sidecars)
  signer_refused: 402,
  signer_unavailable: 502,
  signer_unauthorized: 401,
  signer_bad_request: 400,
  signer_payment_unknown: 404,
  // wallet-signed requests
  wallet_auth_failed: 502,
  sign_failed: 502,
  sign_timeout: 502,
  // after the paid retry
  payment_rejected: 402,
  payment_not_sent: 502,
  payment_indeterminate: 502,
  payment_indeterminate_timeout: 504,
  // resilience (src/resilience/error-codes.ts; docs/architecture.md, Payments)
  rate_limited: 429,
  circuit_open: 503,
  payments_stopped: 402,
  dry_run: 402,
  payment_in_flight: 409,
  idempotency_key_reused: 422,
  payments_in_flight_full: 503,
  usage_unreadable: 502,
  // `stoka-proxy pay --settled/--failed`: no such open payment of the pay command
  payment_not_open: 409,
  // the admin endpoints
  admin_disabled: 403,
  admin_unauthorized: 401,
  approval_not_found: 404,
  // other
  bad_payment_header: 400,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class StokaProxyError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  /** Extra JSON fields for the response (e.g. payment_id). Never secrets. */
  readonly details: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message: string,
    hint: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "StokaProxyError";
    this.code = code;
    this.hint = hint;
    this.details = options?.details ?? {};
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export interface ErrorBody {
  error: string;
  code: string;
  hint?: string;
  [key: string]: unknown;
}

/** The JSON body and status an error maps to; unknown errors never leak their message. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof StokaProxyError) {
    return {
      status: err.status,
      body: { error: err.message, code: err.code, hint: err.hint, ...err.details },
    };
  }
  return {
    status: 500,
    body: {
      error: "internal error in stoka-proxy",
      code: "internal",
      hint: "see the proxy's log for details",
    },
  };
}
