import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pricing } from "../../src/sandbox/pricing.js";
import { defaultPricing } from "../../src/sandbox/pricing.js";
import { curlStore } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * A quote above the per-request cap (docs/configuration.md, Quote-ahead) may be the manifest's
 * price gone stale (kept ten minutes): the proxy must not refuse the request on its own guess
 * but ask the server, and pay its real price when that is within the cap.
 */

describe("quote_ahead: [store] under a per-request cap", () => {
  let w: ProxyWorld;
  const pricing: Pricing = defaultPricing();
  beforeAll(async () => {
    w = await startProxyWorld(
      (c) => {
        for (const h of c.paidHosts) h.quoteAhead = ["store"];
        for (const b of c.budgets) b.perRequestMax = 2000n;
      },
      {},
      { pricing },
    );
  });
  afterAll(async () => {
    await w.close();
  });

  it("a stale quote above the cap takes the normal path and pays the server's price", async () => {
    const store = (key: string, bytes: number) => curlStore(w.proxyUrl, key, bytes);
    expect((await store("template", 100)).status).toBe(201);
    expect((await store("warm", 100)).status).toBe(201); // quoted: the pricing is cached
    // stoka lowers its price; the proxy's cached pricing would quote 4 KiB at 1000 + 4 × 400 = 2600.
    pricing.store.per_kib_per_day = 0;
    const charged = w.charged();
    const r = await store("big", 4096);
    expect(r.headers["x-stoka-proxy-error"]).toBeUndefined();
    expect(r.status).toBe(201);
    expect(w.charged() - charged).toBe(1400n); // 1000 + 4 × 100, within the cap
  });
});
