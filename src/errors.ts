/**
 * One base error for everything a user can meet, with a stable `code`, and one table from
 * code to HTTP status (design.md §8). Messages say what happened; `hint` says what to do next.
 */
export const ERROR_STATUS = {
  config_invalid: 500,
  sandbox_start_failed: 500,
  payment_create_failed: 502,
  payment_timeout: 504,
  signer_unavailable: 402,
  bad_payment_header: 400,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class StokaProxyError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;

  constructor(code: ErrorCode, message: string, hint: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StokaProxyError";
    this.code = code;
    this.hint = hint;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

/** The JSON body and status an error maps to; unknown errors never leak their message. */
export function errorResponse(err: unknown): {
  status: number;
  body: { error: string; code: string; hint?: string };
} {
  if (err instanceof StokaProxyError) {
    return { status: err.status, body: { error: err.message, code: err.code, hint: err.hint } };
  }
  return { status: 500, body: { error: "internal error in stoka-proxy; see its log", code: "internal" } };
}
