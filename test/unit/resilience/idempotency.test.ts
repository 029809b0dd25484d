import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  IdempotencyRegistry,
  normaliseUrl,
  readIdempotencyKey,
  requestIdentity,
} from "../../../src/resilience/idempotency.js";
import type { IdentityInput } from "../../../src/resilience/idempotency.js";

const BUDGET = { numRuns: 1000, interruptAfterTimeLimit: 3000 };
const body = Buffer.from("hello");
const base: IdentityInput = {
  client: "app",
  method: "POST",
  url: "https://api.stoka.space/v1/store",
  body,
  idempotencyKey: undefined,
};
const id = (over: Partial<IdentityInput> = {}) => requestIdentity({ ...base, ...over });
const SETTINGS = { maxEntries: 3, inFlightTtlMs: 1_000, indeterminateTtlMs: 10_000 };

describe("URL normalisation (RFC 3986 §6.2.2)", () => {
  it.each([
    ["host and scheme case", "HTTPS://API.Stoka.Space/v1/store", "https://api.stoka.space/v1/store"],
    ["default port", "https://api.stoka.space:443/v1/store", "https://api.stoka.space/v1/store"],
    ["other port kept", "https://api.stoka.space:8443/v1/store", "https://api.stoka.space:8443/v1/store"],
    ["trailing dot of the host", "https://api.stoka.space./v1/store", "https://api.stoka.space/v1/store"],
    ["empty path", "https://api.stoka.space", "https://api.stoka.space/"],
    ["dot segments", "https://api.stoka.space/v1/x/../store", "https://api.stoka.space/v1/store"],
    [
      "escaped unreserved decoded",
      "https://api.stoka.space/v1/retrieve/%7Euser%2D1",
      "https://api.stoka.space/v1/retrieve/~user-1",
    ],
    [
      "escape hex in uppercase",
      "https://api.stoka.space/v1/retrieve/my%2fkey",
      "https://api.stoka.space/v1/retrieve/my%2Fkey",
    ],
    ["fragment dropped", "https://api.stoka.space/v1/store#x", "https://api.stoka.space/v1/store"],
    [
      "query order kept",
      "https://api.stoka.space/v1/me/usage?b=2&a=1",
      "https://api.stoka.space/v1/me/usage?b=2&a=1",
    ],
    ["query escapes", "https://api.stoka.space/q?k=%61%2f", "https://api.stoka.space/q?k=a%2F"],
    ["unparseable kept apart", "not a url", "unparsed:not a url"],
  ])("%s", (_name, raw, expected) => {
    expect(normaliseUrl(raw)).toBe(expected);
  });
});

describe("request identity", () => {
  it.each([
    ["the same request", {}, true],
    [
      "the same request spelled differently",
      { url: "https://API.stoka.space:443/v1/store#f", method: "post" },
      true,
    ],
    ["another body", { body: Buffer.from("hello!") }, false],
    ["another client", { client: "other" }, false],
    ["another method", { method: "PUT" }, false],
    ["another path", { url: "https://api.stoka.space/v1/store2" }, false],
    ["another query", { url: "https://api.stoka.space/v1/store?x=1" }, false],
  ])("fingerprint: %s → same: %s", (_name, over, same) => {
    expect(id(over).id === id().id).toBe(same);
  });

  it("an Idempotency-Key names the request, scoped by client; the key itself is not kept", () => {
    const a = id({ idempotencyKey: "order-42" });
    expect(a.source).toBe("idempotency_key");
    expect(a.id).not.toContain("order-42");
    expect(id({ idempotencyKey: '"order-42"' }).id).toBe(a.id); // structured-field string
    expect(id({ idempotencyKey: "order-42", body: Buffer.from("other") }).id).toBe(a.id);
    expect(id({ idempotencyKey: "order-42", client: "other" }).id).not.toBe(a.id);
    expect(id({ idempotencyKey: "order-43" }).id).not.toBe(a.id);
  });

  it.each([
    ["a plain token", "abc-123", "abc-123"],
    ["a quoted string", '"8e03978e-40d5-43e8"', "8e03978e-40d5-43e8"],
    ["surrounding spaces", "  k1 ", "k1"],
    ["empty", "", null],
    ["empty quotes", '""', null],
    ["an inner space", "a b", null],
    ["too long", "k".repeat(256), null],
    ["non-ASCII", "clé", null],
    ["two values", ["a", "b"], null],
    ["one value in a list", ["a"], "a"],
    ["absent", undefined, null],
  ])("Idempotency-Key: %s", (_name, value, expected) => {
    expect(readIdempotencyKey(value)).toBe(expected);
  });

  it("an unusable key falls back to the fingerprint", () => {
    expect(id({ idempotencyKey: "a b" })).toEqual(id());
  });
});

describe("registry", () => {
  it("a repeat while in flight does not pay; after a final outcome it may", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    expect(r.begin(id(), "p1", 0)).toEqual({ kind: "proceed" });
    expect(r.begin(id(), "p2", 1)).toEqual({ kind: "conflict", state: "in_flight", paymentId: "p1" });
    r.settle(id(), "p1", "settled", 2);
    expect(r.begin(id(), "p3", 3)).toEqual({ kind: "proceed" });
  });

  it.each(["settled", "rejected", "failed", "refused"] as const)("%s releases the entry", (outcome) => {
    const r = new IdempotencyRegistry(SETTINGS);
    r.begin(id(), "p1", 0);
    r.settle(id(), "p1", outcome, 1);
    expect(r.begin(id(), "p2", 2).kind).toBe("proceed");
  });

  it("indeterminate keeps blocking repeats, for its own TTL, until reconciled", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    r.begin(id(), "p1", 0);
    r.settle(id(), "p1", "indeterminate", 500);
    expect(r.begin(id(), "p2", 5_000)).toEqual({ kind: "conflict", state: "indeterminate", paymentId: "p1" });
    expect(r.begin(id(), "p2", 10_500)).toEqual({ kind: "proceed" });
    r.settle(id(), "p2", "indeterminate", 10_600);
    expect(r.releasePayment("p2")).toBe(true);
    expect(r.releasePayment("p2")).toBe(false);
    expect(r.begin(id(), "p3", 10_700).kind).toBe("proceed");
  });

  it("only the payment that holds the entry can change it", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    r.begin(id(), "p1", 0);
    r.settle(id(), "other", "settled", 1);
    expect(r.begin(id(), "p2", 2).kind).toBe("conflict");
  });

  it("an in-flight entry that never reports expires", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    r.begin(id(), "p1", 0);
    expect(r.begin(id(), "p2", 999).kind).toBe("conflict");
    expect(r.begin(id(), "p2", 1_000).kind).toBe("proceed");
  });

  it("a key reused for another request is a mismatch", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    r.begin(id({ idempotencyKey: "k" }), "p1", 0);
    expect(r.begin(id({ idempotencyKey: "k", body: Buffer.from("x") }), "p2", 1)).toEqual({
      kind: "mismatch",
      paymentId: "p1",
    });
    expect(r.begin(id({ idempotencyKey: "k" }), "p2", 1)).toMatchObject({
      kind: "conflict",
      state: "in_flight",
    });
  });

  it("full: expired first, then the oldest indeterminate, never a live in-flight entry", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    const a = id({ client: "a" });
    const b = id({ client: "b" });
    const c = id({ client: "c" });
    const d = id({ client: "d" });
    r.begin(a, "pa", 0);
    r.begin(b, "pb", 0);
    r.begin(c, "pc", 0);
    expect(r.begin(d, "pd", 10)).toEqual({ kind: "full" });
    r.settle(b, "pb", "indeterminate", 20);
    r.settle(c, "pc", "indeterminate", 20);
    expect(r.begin(d, "pd", 30)).toEqual({ kind: "proceed" }); // b, the oldest indeterminate, gave way
    expect(r.begin(b, "pb2", 40).kind).toBe("proceed"); // full again: c, the last indeterminate, gives way
    expect(r.begin(a, "pa2", 50).kind).toBe("conflict");
    expect(r.snapshot(50)).toEqual({ inFlight: 3, indeterminate: 0, capacity: 3 });
    expect(r.begin(c, "pc2", 1_500).kind).toBe("proceed"); // the expired in-flight entries make room
  });

  it("seeded after a restart from the ledger", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    const x = id();
    r.seedIndeterminate(x.id, x.fingerprint, "p1", 0, 100);
    expect(r.begin(x, "p2", 200)).toEqual({ kind: "conflict", state: "indeterminate", paymentId: "p1" });
    const y = id({ client: "y" });
    r.seedIndeterminate(y.id, y.fingerprint, "old", -20_000, 100); // its TTL already ran out
    expect(r.begin(y, "p3", 200).kind).toBe("proceed");
  });

  it("sweep drops what expired", () => {
    const r = new IdempotencyRegistry(SETTINGS);
    r.begin(id(), "p1", 0);
    expect(r.sweep(999)).toBe(0);
    expect(r.sweep(1_000)).toBe(1);
    expect(r.snapshot(1_000).inFlight).toBe(0);
  });
});

describe("registry: properties", () => {
  // With room for every identity (eviction of indeterminate entries under pressure is the
  // documented exception, covered by the table above).
  it("at most one live payment per identity, whatever the order of events", () => {
    type Ev = { who: number; what: "begin" | "settled" | "indeterminate" | "release"; gap: number };
    const ev = fc.record({
      who: fc.nat({ max: 4 }),
      what: fc.constantFrom(
        "begin" as const,
        "settled" as const,
        "indeterminate" as const,
        "release" as const,
      ),
      gap: fc.nat({ max: 400 }),
    });
    fc.assert(
      fc.property(fc.array(ev, { maxLength: 200 }), (events: Ev[]) => {
        const r = new IdempotencyRegistry({ ...SETTINGS, maxEntries: 5 });
        const identities = [0, 1, 2, 3, 4].map((n) => id({ client: `c${n}` }));
        // What the registry should hold: identity → {paymentId, expires}.
        const live = new Map<number, { paymentId: string; expiresAt: number }>();
        let now = 0;
        let n = 0;
        for (const e of events) {
          now += e.gap;
          const who = identities[e.who]!;
          const held = live.get(e.who);
          if (held && held.expiresAt <= now) live.delete(e.who);
          if (e.what === "begin") {
            const paymentId = `p${n++}`;
            const res = r.begin(who, paymentId, now);
            if (live.has(e.who)) expect(res.kind).toBe("conflict");
            if (res.kind === "proceed") {
              expect(live.has(e.who)).toBe(false);
              live.set(e.who, { paymentId, expiresAt: now + SETTINGS.inFlightTtlMs });
            }
          } else if (held && live.has(e.who)) {
            if (e.what === "release") {
              r.releasePayment(held.paymentId);
              live.delete(e.who);
            } else {
              r.settle(who, held.paymentId, e.what, now);
              if (e.what === "settled") live.delete(e.who);
              else
                live.set(e.who, { paymentId: held.paymentId, expiresAt: now + SETTINGS.indeterminateTtlMs });
            }
          }
        }
      }),
      BUDGET,
    );
  });
});
