import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curl, curlStore } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * A quoted store (paid_hosts[].quote_ahead) is a send to the paid host like any other: it
 * waits for that host's rate limiter, and a Retry-After pause the host asked for holds it too
 * (docs/architecture.md, Resilience): past the limiter's wait the app gets the proxy's 429
 * `rate_limited` and nothing is signed or paid.
 */
const BASE = "http://test.api.stoka.space";

describe("quote_ahead: [store] under the host's rate limiter", () => {
  let w: ProxyWorld;
  beforeAll(async () => {
    w = await startProxyWorld((c) => {
      for (const h of c.paidHosts) h.quoteAhead = ["store"];
      c.resilience.retry = { ...c.resilience.retry, maxAttempts: 1 };
      if (c.resilience.rateLimit) c.resilience.rateLimit = { ...c.resilience.rateLimit, maxWaitMs: 500 };
    });
  });
  afterAll(async () => {
    await w.close();
  });

  it("a Retry-After pause holds a quoted store: 429 rate_limited, nothing signed or charged", async () => {
    const store = (key: string) => curlStore(w.proxyUrl, key, 100);
    expect((await store("template")).status).toBe(201); // the route's template (normal path)
    expect((await store("quoted")).status).toBe(201); // quoted: one upstream request
    // The host answers an unpaid request 429 with Retry-After: 10 (not retried: max_attempts 1).
    w.sandbox.emulator.addFault({ kind: "rate_limited", route: "retrieve", retryAfterSeconds: 10 });
    const limited = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/retrieve/nothing` });
    expect(limited.status).toBe(429);
    const charged = w.charged();
    const signs = w.signCalls();
    const seen = w.sandbox.emulator.state.requests.get("store") ?? 0;
    const r = await store("paused");
    expect(r.status).toBe(429);
    expect(r.headers["x-stoka-proxy-error"]).toBe("rate_limited");
    expect(w.signCalls()).toBe(signs);
    expect(w.charged()).toBe(charged);
    expect(w.sandbox.emulator.state.requests.get("store") ?? 0).toBe(seen);
  });
});
