import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import { AdminServer } from "../../src/observability/admin.js";
import { DEFAULT_IDEMPOTENCY } from "../../src/resilience/idempotency.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * An app that sends the same request again while its payment waits for a person, past the
 * idempotency registry's in-flight TTL (an approval may wait up to an hour; the TTL is five
 * minutes by default): the repeat must not open a second payment for the same request. The
 * emulator's charges are the truth.
 */
const ADMIN = "approvals-retry-admin-token-0123456789abcdef";
const PRICE = 1_400n;

interface Pending {
  id: string;
  payment_id: string;
}

const store = (w: ProxyWorld, key: string) =>
  curl({
    proxy: w.proxyUrl,
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    headers: { "X-Stoka-Key": key, "Idempotency-Key": `idem-${key}` },
    body: Buffer.from("a".repeat(42)),
  });

describe("the same request sent again while its payment waits for approval", () => {
  let w: ProxyWorld;
  let admin: AdminServer;

  const pending = async (): Promise<Pending[]> => {
    const r = await fetch(`${admin.url}/approvals`, { headers: { authorization: `Bearer ${ADMIN}` } });
    return ((await r.json()) as { pending: Pending[] }).pending;
  };
  const decide = (id: string, verb: "approve" | "deny") =>
    fetch(`${admin.url}/approvals/${id}/${verb}`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: "{}",
    });
  const waiting = async (n: number): Promise<Pending[]> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const list = await pending();
      if (list.length === n) return list;
      if (Date.now() > deadline) throw new Error(`expected ${n} pending approvals, saw ${list.length}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    w = await startProxyWorld((c: ProxyConfig) => {
      c.adminToken = ADMIN;
      const b = c.budgets[0];
      if (b) b.approval = { above: 1_000n, timeoutMs: 20_000 };
      // The in-flight entry's TTL, shorter than the approval's wait (as 300 s is shorter than 3600 s).
      c.resilience.idempotency = { ...DEFAULT_IDEMPOTENCY, inFlightTtlMs: 1_000 };
    });
    admin = new AdminServer(
      { host: "127.0.0.1", port: 0 },
      w.proxy.registry,
      () => w.proxy.readiness(),
      undefined,
      w.proxy.operator.adminRoutes(),
      { adminToken: ADMIN, controls: w.proxy.paymentControls() },
    );
    await admin.listen();
  }, 60_000);

  afterAll(async () => {
    for (const p of (await pending().catch(() => [])) ?? [])
      await decide(p.id, "deny").catch(() => undefined);
    await admin?.close();
    await w?.close();
  });

  it("is answered as a repeat (nothing new waits, reserved or signed), and the approved one is paid once", async () => {
    const first = store(w, "retry-1");
    const [p] = await waiting(1);
    if (!p) throw new Error("no pending approval");
    // Past the in-flight TTL, the app sends the very same request (same Idempotency-Key).
    await new Promise((r) => setTimeout(r, 1_500));
    const again = store(w, "retry-1");
    const settled = await Promise.race([
      again.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 4_000)),
    ]);
    const list = await pending();
    expect(list.map((q) => q.id)).toEqual([p.id]);
    expect(settled).toBe(true);
    const repeat = await again;
    expect(repeat.status).toBe(409);
    const reserved = await w.proxy.stores.budgets.reserved(
      w.config.budgets[0] as NonNullable<ProxyConfig["budgets"][number]>,
    );
    expect(reserved).toBe(PRICE);

    expect((await decide(p.id, "approve")).status).toBe(200);
    expect((await first).status).toBe(201);
    expect(w.signCalls()).toBe(1);
    expect(w.charged()).toBe(PRICE);
  }, 60_000);

  it("a decision whose reason holds the admin token is refused (it would reach the app and the log)", async () => {
    const answer = store(w, "reason-1");
    const [p] = await waiting(1);
    if (!p) throw new Error("no pending approval");
    const r = await fetch(`${admin.url}/approvals/${p.id}/deny`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: `oops ${ADMIN}` }),
    });
    expect(r.status).toBe(400);
    expect((await pending()).map((q) => q.id)).toEqual([p.id]);
    expect((await decide(p.id, "deny")).status).toBe(200);
    const res = await answer;
    expect(res.status).toBe(402);
    expect(res.body.toString("utf8")).not.toContain(ADMIN);
    expect(w.logs()).not.toContain(ADMIN);
  }, 60_000);
});

describe("a payment that reaches the approval gate after the drain began", () => {
  it("is refused at once (nothing waits, nothing signed), so the drain does not wait for its deadline", async () => {
    const w = await startProxyWorld((c: ProxyConfig) => {
      const b = c.budgets[0];
      if (b) b.approval = { above: 1_000n, timeoutMs: 60_000 };
    });
    try {
      // The 402 comes late: the request is in flight, before the gate, when the drain begins.
      w.sandbox.emulator.addFault({ kind: "slow", stage: "challenge", delayMs: 1_500 });
      const answer = store(w, "late-1");
      await new Promise((r) => setTimeout(r, 500));
      const started = Date.now();
      const drained = await w.proxy.shutdown(8_000);
      expect(drained.cut).toBe(0);
      expect(Date.now() - started).toBeLessThan(6_000);
      const res = await answer;
      expect(res.status).toBe(402);
      expect(res.headers["x-stoka-proxy-error"]).toBe("approval_denied");
      expect(w.signCalls()).toBe(0);
      expect(w.charged()).toBe(0n);
      const proxy = (JSON.parse(res.body.toString("utf8")) as { proxy: { reason: string } }).proxy;
      expect(proxy.reason).toMatch(/shutting down; nothing was signed/);
      // Refused before any wait began: nobody was asked (no webhook, no pending entry).
      expect(w.logs()).not.toContain("payment waits for approval");
    } finally {
      await w.close();
    }
  }, 60_000);
});
