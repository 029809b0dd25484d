import { describe, expect, it } from "vitest";
import { ERROR_STATUS } from "../../../src/errors.js";
import { RESILIENCE_ERROR_STATUS } from "../../../src/resilience/error-codes.js";

describe("resilience error codes", () => {
  it("each is in the shared table, with the same status", () => {
    for (const [code, status] of Object.entries(RESILIENCE_ERROR_STATUS))
      expect(ERROR_STATUS[code as keyof typeof ERROR_STATUS]).toBe(status);
  });

  it("their statuses", () => {
    expect(RESILIENCE_ERROR_STATUS).toEqual({
      rate_limited: 429,
      circuit_open: 503,
      payments_stopped: 402,
      dry_run: 402,
      payment_in_flight: 409,
      idempotency_key_reused: 422,
      payments_in_flight_full: 503,
      usage_unreadable: 502,
    });
  });
});
