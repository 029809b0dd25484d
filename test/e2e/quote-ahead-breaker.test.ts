import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pricing } from "../../src/sandbox/pricing.js";
import { defaultPricing } from "../../src/sandbox/pricing.js";
import { curlStore } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * A quoted payment answered 402 is the proxy's own price gone stale (docs/configuration.md,
 * Quote-ahead), not a host failing payments: it must not count towards the route's circuit
 * breaker, or a price change met by a few quoted requests in flight would stop the route's
 * payments for the cool-down although the normal path pays fine.
 */

describe("quote_ahead: [store] with a circuit breaker", () => {
  let w: ProxyWorld;
  const pricing: Pricing = defaultPricing();
  beforeAll(async () => {
    w = await startProxyWorld(
      (c) => {
        for (const h of c.paidHosts) h.quoteAhead = ["store"];
        c.resilience.breaker = {
          failureThreshold: 1,
          windowMs: 60_000,
          coolDownMs: 60_000,
          probeTimeoutMs: 10_000,
        };
      },
      {},
      { pricing },
    );
  });
  afterAll(async () => {
    await w.close();
  });

  it("stale quotes met by 402s do not open the breaker: the next store pays on the normal path", async () => {
    const store = (key: string) => curlStore(w.proxyUrl, key, 100);
    expect((await store("template")).status).toBe(201);
    expect((await store("warm")).status).toBe(201); // quoted: the manifest's pricing is cached
    pricing.store.base = 1500; // the proxy still holds the old manifest pricing
    // One failure opens this breaker (threshold 1): a stale quote must not be one.
    const stale = await store("stale");
    expect(stale.status).toBe(402);
    expect(stale.headers["x-stoka-proxy-error"]).toBe("payment_rejected");
    const charged = w.charged();
    const next = await store("after");
    expect(next.headers["x-stoka-proxy-error"]).toBeUndefined();
    expect(next.status).toBe(201);
    expect(w.charged() - charged).toBe(1900n);
  });
});
