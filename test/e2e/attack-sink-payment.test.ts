import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { BASE, storeVia, viaProxy } from "../support/resilience-world.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * Attack review of 25a9a5a (paidExchange split into the fast path and payChallenge): the real
 * payment flow against the emulator. Each 402 is paid at most once, the paid answer reaches the
 * app whole, and the answers that are not 402s (written through the new sink) are untouched.
 */
let w: ProxyWorld;
beforeAll(async () => {
  w = await startProxyWorld((c) => {
    c.resilience.rateLimit = null;
    c.resilience.breaker = null;
  });
});
afterAll(async () => {
  await w?.close();
});
beforeEach(() => resetSwitches(w.sandbox, 0));

describe("the 402 path after the split", () => {
  it("a store is paid once and answered 201; its retrieve is paid once and returns the bytes", async () => {
    const body = Buffer.from("p".repeat(4096));
    const signs = w.signCalls();
    const charged = w.charged();
    const stored = await storeVia(w, "attack-sink-pay-1", body);
    expect(stored.status).toBe(201);
    expect(w.signCalls() - signs).toBe(1);
    const afterStore = w.charged();
    expect(afterStore > charged).toBe(true);
    const got = await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/retrieve/attack-sink-pay-1`);
    expect(got.status).toBe(200);
    expect(got.body).toBe(body.toString());
    expect(w.signCalls() - signs).toBe(2);
  });

  it("eight stores at once: eight payments, no more, every answer 201", async () => {
    const signs = w.signCalls();
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        storeVia(w, `attack-sink-par-${i}`, Buffer.from(`v${i}`.repeat(30))),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(201));
    expect(w.signCalls() - signs).toBe(8);
  });

  it("a request that gets no 402 (the manifest) goes through the fast path and signs nothing", async () => {
    const signs = w.signCalls();
    const m = await viaProxy(w.proxyUrl, "GET", `${BASE}/.well-known/stoka.json`);
    expect(m.status).toBe(200);
    expect(() => JSON.parse(m.body)).not.toThrow();
    expect(w.signCalls()).toBe(signs);
  });

  it("a wallet-signed route (the signed answer through the sink): 200, readable JSON, nothing paid", async () => {
    const signs = w.signCalls();
    const usage = await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/me/usage?days=1`);
    expect(usage.status).toBe(200);
    expect(() => JSON.parse(usage.body)).not.toThrow();
    expect(w.signCalls()).toBe(signs);
  });
});
