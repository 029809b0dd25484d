import { describe, expect, it } from "vitest";
import { IdempotencyRegistry, requestIdentity } from "../../../src/resilience/idempotency.js";

/** A payment waiting for a person keeps its entry past the in-flight TTL (approval-gate.ts). */
const id = requestIdentity({
  client: "app",
  method: "POST",
  url: "https://api.stoka.space/v1/store",
  body: Buffer.from("hello"),
  idempotencyKey: "k-1",
});
const SETTINGS = { maxEntries: 3, inFlightTtlMs: 1_000, indeterminateTtlMs: 10_000 };

describe("IdempotencyRegistry.holdUntil", () => {
  it.each([
    // [hold until, asked again at, answer]
    [60_000, 30_000, "conflict"], // within the wait: a repeat
    [60_000, 60_900, "conflict"], // the in-flight TTL runs from the wait's deadline
    [60_000, 61_100, "proceed"], // past both: a stuck entry is freed at last
    [500, 900, "conflict"], // a deadline before the TTL never shortens it
  ])("held until %i ms, asked at %i ms: %s", (until, at, kind) => {
    const r = new IdempotencyRegistry(SETTINGS);
    expect(r.begin(id, "pay-1", 0).kind).toBe("proceed");
    r.holdUntil(id, "pay-1", until);
    expect(r.begin(id, "pay-2", at).kind).toBe(kind);
  });

  it("only the payment holding the entry can hold it, and not once it is indeterminate", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    r.begin(id, "pay-1", 0);
    r.holdUntil(id, "someone-else", 60_000);
    expect(r.begin(id, "pay-2", 1_500).kind).toBe("proceed");
    r.settle(id, "pay-2", "indeterminate", 1_500);
    r.holdUntil(id, "pay-2", 1_000_000);
    expect(r.begin(id, "pay-3", 11_600).kind).toBe("proceed");
  });
});
