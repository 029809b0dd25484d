import type net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { startRawUpstream } from "../support/raw-upstream.js";
import type { RawUpstream } from "../support/raw-upstream.js";
import { viaProxy } from "../support/resilience-world.js";

/**
 * Attack review of 25a9a5a (Resilience.admit split into admitNow / admitLater; sendUnpaid
 * skips its awaits): the per-host rate limiter's three answers (ok, wait, reject) and a
 * Retry-After pause, through the real proxy to a raw upstream, with deterministic settings
 * (2/s, burst 1, no jitter, at most 1200 ms of waiting).
 */
const PAID = "http://test.api.stoka.space";
let w: ProxyWorld;
let up: RawUpstream;
let seen: { path: string; at: number }[] = [];
let answer: (s: net.Socket, path: string) => void = (s) =>
  s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");

beforeAll(async () => {
  up = await startRawUpstream((s, head) => {
    const path = head.split(" ")[1] ?? "";
    seen.push({ path, at: Date.now() });
    answer(s, path);
  });
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = 3000;
    c.resilience.breaker = null;
    c.resilience.retry.maxAttempts = 1;
    c.resilience.rateLimit = {
      ratePerSecond: 2,
      burst: 1,
      maxWaitMs: 1200,
      jitterRatio: 0,
      retryAfterCapMs: 10_000,
    };
    c.paidHosts = c.paidHosts.map((e) => ({ ...e, upstream: new URL(`http://127.0.0.1:${up.port}`) }));
  });
});
afterAll(async () => {
  await w?.close();
  await up?.close();
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const get = (path: string) => viaProxy(w.proxyUrl, "GET", `${PAID}${path}`);

describe("the rate limiter after admitNow / admitLater", () => {
  it("four at once: one now, one after ~500 ms, one after ~1000 ms, the fourth refused (429 rate_limited, Retry-After, never sent)", async () => {
    await sleep(1100); // a full bucket
    seen = [];
    const started = Date.now();
    const answers = await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        // In this order, far enough apart that a loaded machine does not swap two arrivals
        // (the fourth, at ~150 ms, would wait ~1 350 ms: past the 1 200 ms the limiter allows).
        await sleep(i * 50);
        const a = await get(`/v1/objects/rl-${i}`);
        return { ...a, at: Date.now() - started };
      }),
    );
    expect(answers.slice(0, 3).map((a) => a.status)).toEqual([200, 200, 200]);
    expect(answers[3]?.status).toBe(429);
    expect(answers[3]?.headers["x-stoka-proxy-error"]).toBe("rate_limited");
    expect(Number(answers[3]?.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(seen.map((s) => s.path)).toEqual(["/v1/objects/rl-0", "/v1/objects/rl-1", "/v1/objects/rl-2"]);
    const sentAt = seen.map((s) => s.at - started);
    expect(sentAt[0]).toBeLessThan(400);
    expect(sentAt[1]).toBeGreaterThanOrEqual(450);
    expect(sentAt[2]).toBeGreaterThanOrEqual(950);
  });

  it("a 429 with Retry-After: 1 pauses the host: the next request waits it out, then is sent", async () => {
    await sleep(1100);
    seen = [];
    answer = (s, path) =>
      path.endsWith("/throttle")
        ? s.write("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")
        : s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    const first = await get("/v1/objects/throttle");
    expect(first.status).toBe(429);
    expect(first.headers["x-stoka-proxy-error"]).toBeUndefined();
    const t = Date.now();
    await sleep(600); // the token bucket refilled; the pause has ~400 ms left
    const second = await get("/v1/objects/after-pause");
    expect(second.status).toBe(200);
    expect(Date.now() - t).toBeGreaterThanOrEqual(900);
  });

  it("a Retry-After longer than the wait: the next request is refused at once, nothing sent", async () => {
    await sleep(1100);
    answer = (s, path) =>
      path.endsWith("/throttle-long")
        ? s.write("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 4\r\nContent-Length: 0\r\n\r\n")
        : s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    expect((await get("/v1/objects/throttle-long")).status).toBe(429);
    seen = [];
    await sleep(600);
    const t = Date.now();
    const next = await get("/v1/objects/refused");
    expect(next.status).toBe(429);
    expect(next.headers["x-stoka-proxy-error"]).toBe("rate_limited");
    expect(Number(next.headers["retry-after"])).toBeGreaterThanOrEqual(3);
    expect(Date.now() - t).toBeLessThan(300);
    expect(seen).toHaveLength(0);
  });
});
