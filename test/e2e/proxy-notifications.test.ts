import { Keypair } from "@stellar/stellar-sdk";
import type { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { notificationsFileSchema, resolveNotifierConfig } from "../../src/operator/notify/config.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { deadUrl, startWebhookReceiver, until } from "../support/webhook-receiver.js";
import type { WebhookReceiver } from "../support/webhook-receiver.js";

/**
 * Notifications from a real proxy (sandbox emulator behind it) to local webhook receivers: one
 * that answers at once, one that answers too late (times out, retried, given up), one that is
 * down. Scripted requests produce each event the proxy emits: an indeterminate payment (the
 * emulator drops the connection after settling), a 402 refused for its payee, and a budget
 * crossing 80 % and 100 % in one step (once each, not again when the next payment is denied).
 * Every delivery's HMAC is checked by the Python receiver recipe; the requests are not slowed
 * by the slow receiver; the counters account for every event; URLs and secrets never reach
 * the logs or the payloads.
 */
const SECRET = "proxy-webhook-secret-0123456789abcdef";
/** A webhook URL often carries a credential in its path: it must never be logged. */
const URL_SECRET = "hook-path-credential-5f2b9a";

let w: ProxyWorld;
let ops: WebhookReceiver;
let slow: WebhookReceiver;
let down: string;

const store = (key: string, host = "test.api.stoka.space") =>
  curl({
    proxy: w.proxyUrl,
    method: "POST",
    url: `http://${host}/v1/store`,
    headers: { "X-Stoka-Key": key },
    body: Buffer.from("n".repeat(42)),
  });

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x))
    .reduce((a, v) => a + v.value, 0);
}

beforeAll(async () => {
  ops = await startWebhookReceiver(SECRET, { path: `/ops/${URL_SECRET}` });
  slow = await startWebhookReceiver(SECRET, { path: `/slow/${URL_SECRET}`, delayMs: 3_000 });
  down = await deadUrl(`/down/${URL_SECRET}`);
  w = await startProxyWorld((c, sandbox) => {
    // 3 payments of 1400 fill the day: the third crosses 80 % and 100 % at once.
    const limit = c.budgets[0]?.limits[0];
    if (limit) limit.amount = 4_200n;
    c.paidHosts.push({
      host: "untrusted.example",
      upstream: new URL(sandbox.emulator.httpUrl),
      payTo: [Keypair.random().publicKey()],
    });
    // Through the config's own schema and secret resolution, as a config file would be.
    c.notifications = resolveNotifierConfig(
      notificationsFileSchema.parse({
        destinations: [
          { name: "ops", url: ops.url, secret_env: "HOOK_SECRET" },
          { name: "slow", url: slow.url, secret_env: "HOOK_SECRET", timeout_seconds: 0.5 },
          { name: "down", url: down, secret_env: "HOOK_SECRET" },
        ],
        rules: [
          { events: ["budget.threshold"], thresholds: [80, 100] },
          { events: ["payment.indeterminate", "payment.refused_terms", "reconcile.mismatch"] },
        ],
        queue_size: 2,
        retry: { max_attempts: 2, base_delay_seconds: 0.1, max_delay_seconds: 0.2 },
      }),
      { HOOK_SECRET: SECRET },
      () => "",
    );
  });
}, 60_000);

afterAll(async () => {
  await w?.close();
  await ops?.close();
  await slow?.close();
});

const events = (r: WebhookReceiver) =>
  r.hits.map((h) => JSON.parse(h.body) as { id: string; event: string; data: Record<string, unknown> });

describe("webhook notifications from the proxy", () => {
  it("delivers each event once, signed, without slowing the requests, and counts everything", async () => {
    const timings: number[] = [];
    const timed = async (p: () => ReturnType<typeof store>) => {
      const started = Date.now();
      const r = await p();
      timings.push(Date.now() - started);
      return r;
    };
    expect((await timed(() => store("n-1"))).status).toBe(201);
    w.sandbox.emulator.addFault({ kind: "drop_after_settle", remaining: 1 });
    const indeterminate = await timed(() => store("n-2"));
    expect(indeterminate.headers["x-stoka-proxy-error"]).toBe("payment_indeterminate");
    const refused = await timed(() => store("n-3", "untrusted.example"));
    expect(refused.headers["x-stoka-proxy-error"]).toBe("terms_rejected");
    expect((await timed(() => store("n-4"))).status).toBe(201);
    // The budget is full now: denied, and no second threshold notification.
    expect((await timed(() => store("n-5"))).headers["x-stoka-proxy-error"]).toBe("budget_exceeded");
    // The slow receiver holds every delivery for 3 s; no request waited for it.
    expect(Math.max(...timings)).toBeLessThan(2_500);

    await w.proxy.operator.events.settle();
    await until(() => ops.hits.length >= 4, 15_000, "four deliveries to ops");
    await new Promise((r) => setTimeout(r, 300)); // nothing more arrives
    const got = events(ops);
    expect(got.map((e) => e.event).sort()).toEqual([
      "budget.threshold",
      "budget.threshold",
      "payment.indeterminate",
      "payment.refused_terms",
    ]);
    expect(got.filter((e) => e.event === "budget.threshold").map((e) => e.data.threshold_percent)).toEqual([
      80, 100,
    ]);
    const indet = got.find((e) => e.event === "payment.indeterminate");
    const ledgerRow = w.proxy.stores.ledger.latest().find((p) => p.state === "indeterminate");
    expect(indet?.data.payment_id).toBe(ledgerRow?.paymentId);
    expect(indet?.data.amount).toEqual({ atomic: "1400", usdc: expect.any(String) as string });
    const terms = got.find((e) => e.event === "payment.refused_terms");
    expect(terms?.data).toMatchObject({ host: "untrusted.example", term: "pay_to" });
    expect(terms?.data.offered).toBe(w.sandbox.emulator.payTo);
    // Every signature verifies with the Python recipe; ids are unique.
    expect(await Promise.all(ops.hits.map((h) => h.verified))).toEqual([true, true, true, true]);
    expect(new Set(got.map((e) => e.id)).size).toBe(4);
    for (const h of ops.hits) {
      expect(h.body).not.toContain(URL_SECRET);
      expect(h.body).not.toContain(SECRET);
    }

    const reg = w.proxy.registry;
    expect(await counter(reg, "stoka_proxy_notifications_delivered_total", { destination: "ops" })).toBe(4);
    // The dead receiver: every event tried twice, then given up on (or dropped from its queue).
    const accounted = async (destination: string) =>
      (await counter(reg, "stoka_proxy_notifications_delivered_total", { destination })) +
      (await counter(reg, "stoka_proxy_notifications_failed_total", { destination }));
    const dropped = () => counter(reg, "stoka_proxy_notifications_dropped_total", { reason: "queue_full" });
    let down4 = false;
    for (let i = 0; i < 300 && !down4; i++) {
      const total = (await accounted("down")) + (await accounted("slow")) + (await dropped());
      down4 = total === 8;
      if (!down4) await new Promise((r) => setTimeout(r, 50));
    }
    expect(down4).toBe(true);
    expect(await counter(reg, "stoka_proxy_notifications_delivered_total", { destination: "down" })).toBe(0);
    expect(await counter(reg, "stoka_proxy_notifications_delivered_total", { destination: "slow" })).toBe(0);
    // The slow receiver saw each delivery it was sent at most twice (two attempts), all signed.
    expect(await Promise.all(slow.hits.map((h) => h.verified))).not.toContain(false);
    // The logs name destinations, never their URLs or the secret.
    const logs = w.logs();
    expect(logs).toMatch(/"destination":"down"/);
    expect(logs).not.toContain(URL_SECRET);
    expect(logs).not.toContain(SECRET);
  }, 90_000);
});
