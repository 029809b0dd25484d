import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import { startProxyWorld, withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { BASE, chargesSince, storeVia, viaProxy } from "../support/resilience-world.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * Rate limiting and retries on the wallet-signed path (docs/operations.md, Retries), through
 * the real proxy and the emulator's per-route faults: the challenge fetch is retried as any
 * unpaid attempt; the signed request is sent again (with a fresh challenge) after 429 / 503
 * only for idempotent methods; everything the proxy sends to a paid host, 402 or not, takes
 * that host's rate limiter.
 */
function configure(c: ProxyConfig): void {
  c.upstream.timeoutMs = 2000;
  c.resilience.retry = {
    maxAttempts: 3,
    baseDelayMs: 20,
    maxDelayMs: 100,
    maxTotalMs: 3000,
    retryAfterCapMs: 2000,
  };
  // Per route: the wallet's usage is never sent twice, whatever its method allows.
  c.resilience.retryRoutes = { usage: { maxAttempts: 1 } };
  c.resilience.rateLimit = {
    ratePerSecond: 20,
    burst: 20,
    maxWaitMs: 1000,
    jitterRatio: 0.1,
    retryAfterCapMs: 10_000,
    adaptive: {
      floorPerSecond: 1,
      ceilingPerSecond: 20,
      decreaseFactor: 0.5,
      increasePerSecond: 5,
      increaseIntervalMs: 50,
      decreaseCooldownMs: 20,
    },
  };
}

const hits = (w: ProxyWorld, route: string) => w.sandbox.emulator.state.requests.get(route) ?? 0;
const host = (w: ProxyWorld) => new URL(w.sandbox.emulator.httpUrl).host;
const del = (w: ProxyWorld, key: string) => viaProxy(w.proxyUrl, "DELETE", `${BASE}/v1/object/${key}`);
const profile = (w: ProxyWorld) =>
  viaProxy(
    w.proxyUrl,
    "POST",
    `${BASE}/v1/profile`,
    { "content-type": "application/json" },
    Buffer.from(JSON.stringify({ email: "ops@example.com" })),
  );

let w: ProxyWorld;
beforeAll(async () => {
  w = await startProxyWorld(configure);
}, 60_000);
afterAll(async () => {
  await w.close();
});
beforeEach(() => resetSwitches(w.sandbox, 0));

describe("the wallet-signed path", () => {
  it("DELETE answered 503 twice: sent again with a fresh challenge each time, then deleted", async () => {
    expect((await storeVia(w, "del-503")).status).toBe(201);
    const [d0, c0] = [hits(w, "delete"), hits(w, "challenge")];
    w.sandbox.emulator.addFault({ kind: "unavailable", route: "delete", remaining: 2 });
    const answer = await del(w, "del-503");
    expect(answer.status).toBe(204);
    expect(hits(w, "delete") - d0).toBe(3);
    expect(hits(w, "challenge") - c0).toBe(3);
  });

  it("DELETE answered 429 (Retry-After 0): the limiter learns it, the request goes through", async () => {
    const before = w.proxy.ctx.resilience.limiters?.for(host(w))?.snapshot(Date.now()).throttled ?? 0;
    w.sandbox.emulator.addFault({
      kind: "rate_limited",
      route: "delete",
      remaining: 1,
      retryAfterSeconds: 0,
    });
    expect((await del(w, "del-429")).status).toBe(204);
    const snap = w.proxy.ctx.resilience.limiters?.for(host(w))?.snapshot(Date.now());
    expect((snap?.throttled ?? 0) - before).toBe(1);
  });

  it("per route: GET /v1/me/usage with max_attempts 1 is not sent again after a 503", async () => {
    const [u0, c0] = [hits(w, "usage"), hits(w, "challenge")];
    w.sandbox.emulator.addFault({ kind: "unavailable", route: "usage", remaining: 1 });
    const answer = await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/me/usage?days=1`);
    expect(answer.status).toBe(503);
    expect(hits(w, "usage") - u0).toBe(1);
    expect(hits(w, "challenge") - c0).toBe(1);
    expect((await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/me/usage?days=1`)).status).toBe(200);
  });

  it("POST /v1/profile answered 503: not sent again (not idempotent); the 503 goes back as it came", async () => {
    const [p0, c0] = [hits(w, "profile"), hits(w, "challenge")];
    w.sandbox.emulator.addFault({
      kind: "unavailable",
      route: "profile",
      remaining: 1,
      retryAfterSeconds: 1,
    });
    const answer = await profile(w);
    expect(answer.status).toBe(503);
    expect(answer.headers["retry-after"]).toBe("1");
    expect(answer.headers["x-stoka-proxy-error"]).toBeUndefined();
    expect(hits(w, "profile") - p0).toBe(1);
    expect(hits(w, "challenge") - c0).toBe(1);
    // The next one goes through once.
    expect((await profile(w)).status).toBe(200);
    expect(hits(w, "profile") - p0).toBe(2);
  });

  it("the challenge answered 429 and 503: retried as an unpaid attempt, then signed and sent once", async () => {
    const [p0, c0] = [hits(w, "profile"), hits(w, "challenge")];
    w.sandbox.emulator.addFault({
      kind: "rate_limited",
      route: "challenge",
      remaining: 1,
      retryAfterSeconds: 0,
    });
    w.sandbox.emulator.addFault({ kind: "unavailable", route: "challenge", remaining: 1 });
    expect((await profile(w)).status).toBe(200);
    expect(hits(w, "challenge") - c0).toBe(3);
    expect(hits(w, "profile") - p0).toBe(1);
  });

  it("the challenge still 503 past the retries: wallet_auth_failed, nothing signed or forwarded", async () => {
    const [d0, c0] = [hits(w, "delete"), hits(w, "challenge")];
    w.sandbox.emulator.addFault({ kind: "unavailable", route: "challenge", remaining: 3 });
    const answer = await del(w, "never");
    expect(answer.headers["x-stoka-proxy-error"]).toBe("wallet_auth_failed");
    expect(hits(w, "challenge") - c0).toBe(3);
    expect(hits(w, "delete") - d0).toBe(0);
  });
});

describe("one rate limiter for everything sent to a paid host", () => {
  it("a long Retry-After on a signed DELETE pauses the host: the manifest, signed and paid requests get the proxy's 429, nothing sent", async () => {
    await withProxyWorld(configure, async (v) => {
      v.sandbox.emulator.addFault({
        kind: "rate_limited",
        route: "delete",
        remaining: 1,
        retryAfterSeconds: 4,
      });
      // Past the retries' cap (2 s): the upstream's own 429 goes back, Retry-After included.
      const first = await del(v, "paused");
      expect(first.status).toBe(429);
      expect(first.headers["retry-after"]).toBe("4");
      expect(first.headers["x-stoka-proxy-error"]).toBeUndefined();

      const sent = () => ["manifest", "challenge", "delete", "store"].map((r) => hits(v, r));
      const before = sent();
      const charges = v.sandbox.emulator.state.charges.length;
      // A plain request to the paid host (no 402: the manifest), a signed one, a paid one.
      const answers = [
        await viaProxy(v.proxyUrl, "GET", `${BASE}/.well-known/stoka.json`),
        await del(v, "paused"),
        await storeVia(v, "paused"),
      ];
      for (const a of answers) {
        expect(a.status).toBe(429);
        expect(a.headers["x-stoka-proxy-error"]).toBe("rate_limited");
        expect(Number(a.headers["retry-after"])).toBeGreaterThanOrEqual(1);
      }
      expect(sent()).toEqual(before);
      expect(chargesSince(v, charges)).toBe(0);

      // The pause ends: everything goes again (bounded wait).
      await new Promise((r) => setTimeout(r, 4200));
      expect((await viaProxy(v.proxyUrl, "GET", `${BASE}/.well-known/stoka.json`)).status).toBe(200);
      expect((await del(v, "paused")).status).toBe(204);
    });
  }, 60_000);
});
