import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import { AdminServer } from "../../src/observability/admin.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import {
  BASE,
  budgetUsed,
  chargesSince,
  ledgerHead,
  newPayments,
  storeVia,
  viaProxy,
} from "../support/resilience-world.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * The resilience mechanisms flipping and recovering without a restart, through the real proxy
 * and the emulator: a 429 storm (AIMD), the kill switch and dry run (admin endpoints), the
 * circuit breaker, idempotency of app retries.
 */
const TOKEN = "admin-token-for-tests-0123456789";

async function admin(
  url: string,
  path: string,
  token = TOKEN,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, {
    method: path === "/payments" ? "GET" : "POST",
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function metric(url: string, line: RegExp): Promise<number | null> {
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const l of text.split("\n")) if (line.test(l)) return Number(l.split(" ").pop());
  return null;
}

function configure(c: ProxyConfig): void {
  c.upstream.timeoutMs = 1500;
  c.adminToken = TOKEN;
  c.resilience.retry = {
    maxAttempts: 4,
    baseDelayMs: 20,
    maxDelayMs: 200,
    maxTotalMs: 4000,
    retryAfterCapMs: 3000,
  };
  c.resilience.rateLimit = {
    ratePerSecond: 20,
    burst: 20,
    maxWaitMs: 1500,
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
  c.resilience.breaker = { failureThreshold: 2, windowMs: 60_000, coolDownMs: 1000, probeTimeoutMs: 10_000 };
}

let w: ProxyWorld;
let adminServer: AdminServer;
let adminUrl: string;
beforeAll(async () => {
  w = await startProxyWorld(configure);
  adminServer = new AdminServer(
    { host: "127.0.0.1", port: 0 },
    w.proxy.registry,
    () => w.proxy.readiness(),
    undefined,
    [],
    { controls: w.proxy.paymentControls() },
  );
  adminUrl = await adminServer.listen();
});
afterAll(async () => {
  await adminServer.close();
  await w.close();
});
beforeEach(() => resetSwitches(w.sandbox, 0));

const limiter = () => w.proxy.ctx.resilience.limiters?.for(new URL(w.sandbox.emulator.httpUrl).host);

describe("a 429 storm", () => {
  it("AIMD backs off and recovers; every request is paid once; the app sees 429 only past the maximum wait", async () => {
    const charges = w.sandbox.emulator.state.charges.length;
    const seq = ledgerHead(w);
    w.sandbox.emulator.addFault({
      kind: "rate_limited",
      stage: "challenge",
      remaining: 6,
      retryAfterSeconds: 0,
    });
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => storeVia(w, `storm-${i}`)));
    const snap = limiter()?.snapshot(Date.now());
    expect(snap?.decreases).toBeGreaterThan(0);
    expect(snap?.throttled).toBeGreaterThanOrEqual(6);
    // Each answer is paid once, or the proxy's own 429 (the wait would pass its maximum) with
    // Retry-After and nothing paid; the upstream's 429 never reaches the app while retries last.
    const paid = answers.filter((a) => a.status === 201).length;
    for (const a of answers.filter((x) => x.status !== 201)) {
      expect(a.status).toBe(429);
      expect(a.headers["x-stoka-proxy-error"]).toBe("rate_limited");
      expect(Number(a.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    }
    expect(paid).toBeGreaterThan(0);
    // No payment lost or doubled: one charge and one settled row per paid answer.
    expect(chargesSince(w, charges)).toBe(paid);
    const states = [...newPayments(w, seq).values()].map((r) => r[0]?.state);
    expect(states).toEqual(Array(paid).fill("settled"));
    // Recovery: successes raise the rate back to its ceiling (bounded loop).
    for (let i = 0; i < 40 && (limiter()?.snapshot(Date.now()).ratePerSecond ?? 0) < 20; i++) {
      await new Promise((r) => setTimeout(r, 60));
      expect((await storeVia(w, `recover-${i}`)).status).toBe(201);
    }
    expect(limiter()?.snapshot(Date.now()).ratePerSecond).toBe(20);
    expect(await metric(adminUrl, /^stoka_proxy_rate_limit_rate\{/)).toBe(20);
    expect(
      await metric(adminUrl, /^stoka_proxy_upstream_retries_total\{.*reason="status_429"/),
    ).toBeGreaterThan(0);
  });

  it("a Retry-After longer than the wait: the upstream's 429 once, then the proxy's own 429 with Retry-After", async () => {
    const charges = w.sandbox.emulator.state.charges.length;
    w.sandbox.emulator.addFault({ kind: "rate_limited", stage: "challenge", retryAfterSeconds: 4 });
    const first = await storeVia(w, "long-wait-1");
    expect(first.status).toBe(429);
    expect(first.headers["retry-after"]).toBe("4");
    const second = await storeVia(w, "long-wait-2");
    expect(second.status).toBe(429);
    expect(second.headers["x-stoka-proxy-error"]).toBe("rate_limited");
    expect(Number(second.headers["retry-after"])).toBeGreaterThanOrEqual(3);
    expect(JSON.parse(second.body)).toMatchObject({ code: "rate_limited" });
    expect(chargesSince(w, charges)).toBe(0);
    // The pause ends; the host is paid again.
    await new Promise((r) => setTimeout(r, 4200));
    expect((await storeVia(w, "long-wait-3")).status).toBe(201);
    expect(chargesSince(w, charges)).toBe(1);
  });
});

describe("the kill switch and dry run, without a restart", () => {
  it("needs the admin token", async () => {
    expect((await admin(adminUrl, "/payments/stop", "")).status).toBe(401);
    expect((await admin(adminUrl, "/payments/stop", "wrong-token-wrong-token-0000000")).status).toBe(401);
    const off = new AdminServer(
      { host: "127.0.0.1", port: 0 },
      w.proxy.registry,
      async () => [],
      undefined,
      [],
      {
        controls: { ...w.proxy.paymentControls(), token: undefined },
      },
    );
    const url = await off.listen();
    try {
      const r = await admin(url, "/payments/stop");
      expect(r.status).toBe(403);
      expect(String(r.json.hint)).toMatch(/admin\.token_file|STOKA_PROXY_ADMIN_TOKEN/);
    } finally {
      await off.close();
    }
    expect(w.proxy.ctx.resilience.paymentSwitch.decide().kind).toBe("pay");
  });

  it("stop: 402s go back with the reason, nothing signed; resume pays again", async () => {
    const r = await admin(adminUrl, "/payments/stop", TOKEN, { reason: "wallet rotation" });
    expect(r.json).toMatchObject({ stopped: true, changed: true });
    const signed = w.signCalls();
    const charges = w.sandbox.emulator.state.charges.length;
    const used = await budgetUsed(w);
    const res = await storeVia(w, "stopped");
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("payments_stopped");
    expect(JSON.parse(res.body).proxy.reason).toMatch(/wallet rotation/);
    expect(w.signCalls()).toBe(signed);
    expect(chargesSince(w, charges)).toBe(0);
    expect(await budgetUsed(w)).toBe(used);
    expect(await metric(adminUrl, /^stoka_proxy_payment_switch\{switch="stopped"\}/)).toBe(1);
    // Free requests are still proxied.
    const free = await viaProxy(w.proxyUrl, "GET", `${BASE}/.well-known/stoka.json`);
    expect(free.status).toBe(200);
    await admin(adminUrl, "/payments/resume");
    expect((await storeVia(w, "resumed")).status).toBe(201);
    expect(chargesSince(w, charges)).toBe(1);
  });

  it("dry run: logged and metered as would-have-paid, nothing signed, the 402 back; then off", async () => {
    const r = await admin(adminUrl, "/payments/dry-run", TOKEN, { on: true });
    expect(r.json).toMatchObject({ dry_run: true, decision: "dry_run" });
    const signed = w.signCalls();
    const charges = w.sandbox.emulator.state.charges.length;
    const before =
      (await metric(adminUrl, /^stoka_proxy_dry_run_would_pay_atomic_total\{route="store"\}/)) ?? 0;
    const res = await storeVia(w, "dry");
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("dry_run");
    expect(JSON.parse(res.body).proxy).toMatchObject({ code: "dry_run", price: "1400" });
    expect(w.signCalls()).toBe(signed);
    expect(chargesSince(w, charges)).toBe(0);
    expect(await metric(adminUrl, /^stoka_proxy_dry_run_would_pay_atomic_total\{route="store"\}/)).toBe(
      before + 1400,
    );
    expect(w.logs()).toMatch(/dry run: payment not signed/);
    await fetch(`${adminUrl}/payments/dry-run?on=off`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect((await storeVia(w, "dry-off")).status).toBe(201);
  });
});

describe("the circuit breaker, per route", () => {
  it("opens after N second 402s, answers 503 JSON with the reason, probes half-open and closes", async () => {
    for (let i = 0; i < 2; i++) {
      w.sandbox.emulator.addFault({ kind: "settle_fails" });
      expect((await storeVia(w, `breaker-fail-${i}`)).status).toBe(402);
    }
    const charges = w.sandbox.emulator.state.charges.length;
    const signed = w.signCalls();
    const open = await storeVia(w, "breaker-open");
    expect(open.status).toBe(503);
    expect(open.headers["x-stoka-proxy-error"]).toBe("circuit_open");
    expect(open.headers["retry-after"]).toBeDefined();
    expect(JSON.parse(open.body)).toMatchObject({ code: "circuit_open", route: "store", state: "open" });
    expect(JSON.parse(open.body).error).toMatch(/settlement failed/);
    expect(w.signCalls()).toBe(signed);
    expect(await metric(adminUrl, /^stoka_proxy_circuit_state\{route="store",state="open"\}/)).toBe(1);
    await new Promise((r) => setTimeout(r, 1100));
    // Half-open: one probe; it settles and the circuit closes.
    expect((await storeVia(w, "breaker-probe")).status).toBe(201);
    expect(await metric(adminUrl, /^stoka_proxy_circuit_state\{route="store",state="closed"\}/)).toBe(1);
    expect((await storeVia(w, "breaker-closed")).status).toBe(201);
    expect(chargesSince(w, charges)).toBe(2);
    expect(w.logs()).toMatch(/"to":"open"/);
  });
});

describe("idempotency of app retries", () => {
  it("two identical requests at once, the first dropped after settling: one payment, the second 409", async () => {
    const charges = w.sandbox.emulator.state.charges.length;
    w.sandbox.emulator.addFault({ kind: "slow", delayMs: 700 });
    w.sandbox.emulator.addFault({ kind: "drop_after_settle" });
    const first = storeVia(w, "twice");
    await new Promise((r) => setTimeout(r, 300));
    const second = await storeVia(w, "twice");
    expect(second.status).toBe(409);
    expect(second.headers["x-stoka-proxy-payment-state"]).toBe("in_flight");
    const id = second.headers["x-stoka-proxy-payment-id"];
    expect(JSON.parse(second.body)).toMatchObject({ code: "payment_in_flight", payment_id: id });
    const one = await first;
    expect(one.status).toBe(502);
    expect(JSON.parse(one.body).payment_id).toBe(id);
    // Indeterminate now: a later repeat is still not paid.
    const third = await storeVia(w, "twice");
    expect(third.status).toBe(409);
    expect(third.headers["x-stoka-proxy-payment-state"]).toBe("indeterminate");
    expect(chargesSince(w, charges)).toBe(1);
    // A different object is a different request.
    expect((await storeVia(w, "twice-other")).status).toBe(201);
  });

  it("an Idempotency-Key reused for another body is 422; nothing paid", async () => {
    w.sandbox.emulator.addFault({ kind: "slow", delayMs: 600 });
    const first = storeVia(w, "keyed", Buffer.from("a".repeat(42)), { "idempotency-key": "k-1" });
    await new Promise((r) => setTimeout(r, 250));
    const other = await storeVia(w, "keyed", Buffer.from("b".repeat(42)), { "idempotency-key": "k-1" });
    expect(other.status).toBe(422);
    expect(other.headers["x-stoka-proxy-error"]).toBe("idempotency_key_reused");
    expect((await first).status).toBe(201);
  });
});
