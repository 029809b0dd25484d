import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Pricing } from "../../src/sandbox/pricing.js";
import { defaultPricing } from "../../src/sandbox/pricing.js";
import { curl, curlStore } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * Quote-ahead (paid_hosts[].quote_ahead, src/payment/quote-ahead.ts) against the sandbox
 * emulator, which verifies every payment for real and counts the requests it saw per route:
 * once a route has a template, a store is paid with ONE upstream request (no 402 asked for);
 * a stale price meets the server's 402 and still costs at most one payment (signed once,
 * charged nothing), then the route takes the normal path; a retrieve uses the size remembered
 * from the store; and without the setting nothing is paid ahead.
 */
const BASE = "http://test.api.stoka.space";

const store = (w: ProxyWorld, key: string, bytes: number) => curlStore(w.proxyUrl, key, bytes);
const retrieve = (w: ProxyWorld, key: string) =>
  curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/retrieve/${encodeURIComponent(key)}` });
const seen = (w: ProxyWorld, route: string) => w.sandbox.emulator.state.requests.get(route) ?? 0;
const charges = (w: ProxyWorld) => w.sandbox.emulator.state.charges.length;

describe("quote_ahead: [store, retrieve]", () => {
  let w: ProxyWorld;
  // The emulator quotes from this object (and publishes it in its manifest); the test changes it.
  const pricing: Pricing = defaultPricing();
  beforeAll(async () => {
    w = await startProxyWorld(
      (c) => {
        for (const h of c.paidHosts) h.quoteAhead = ["store", "retrieve"];
      },
      {},
      { pricing },
    );
  });
  afterAll(async () => {
    await w.close();
  });

  it("the first store takes the normal path; the next ones pay with one upstream request each", async () => {
    const first = await store(w, "qa-0", 100);
    expect(first.status).toBe(201);
    expect(first.headers["x-stoka-proxy-paid"]).toBe("1400");
    for (const [i, bytes] of [
      [1, 100],
      [2, 2000], // another size: priced from the manifest, 1000 + 2 × (100 + 30 × 10)
      [3, 42],
    ] as const) {
      const requests = seen(w, "store");
      const charged = w.charged();
      const signs = w.signCalls();
      const r = await store(w, `qa-${i}`, bytes);
      expect(r.status).toBe(201);
      const price = 1000n + BigInt(Math.ceil(bytes / 1024)) * 400n;
      expect(r.headers["x-stoka-proxy-paid"]).toBe(price.toString());
      expect(seen(w, "store") - requests).toBe(1); // no 402 round trip
      expect(w.signCalls() - signs).toBe(1);
      expect(w.charged() - charged).toBe(price);
    }
    // The ledger records each quoted payment like any other: reserved, sent, settled.
    const settled = w.proxy.stores.ledger.inState("settled");
    expect(settled).toHaveLength(4);
    expect(await w.proxy.stores.payments.verify()).toMatchObject({ ok: true });
  });

  it("a request that carries the app's own payment header is never paid ahead", async () => {
    expect((await store(w, "qa-own-template", 100)).status).toBe(201);
    const requests = seen(w, "store");
    const signs = w.signCalls();
    const r = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "qa-own", "X-PAYMENT": "bm90LWEtcGF5bWVudA==" },
      body: Buffer.from("q".repeat(100)),
    });
    // The app's own (unreadable) payment went as sent, and the server's answer to it came back;
    // nothing was signed. Paid ahead, the proxy would have put its own header in its place.
    expect(r.status).toBe(400);
    expect(seen(w, "store") - requests).toBe(1);
    expect(w.signCalls() - signs).toBe(0);
  });

  it("a retrieve after a store is paid ahead at the size remembered from the store", async () => {
    // A retrieve on the normal path first: the route's template.
    expect((await store(w, "qa-r-template", 10)).status).toBe(201);
    expect((await retrieve(w, "qa-r-template")).status).toBe(200);
    expect((await store(w, "qa-r", 3000)).status).toBe(201);
    const requests = seen(w, "retrieve");
    const charged = w.charged();
    const r = await retrieve(w, "qa-r");
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(3000);
    expect(r.headers["x-stoka-proxy-paid"]).toBe("1300"); // 1000 + 100 × ceil(3000 / 1024)
    expect(seen(w, "retrieve") - requests).toBe(1);
    expect(w.charged() - charged).toBe(1300n);
  });

  it("a stale price: the server's 402 reaches the app, at most one payment (none charged), then the normal path", async () => {
    expect((await store(w, "qa-s-warm", 100)).status).toBe(201);
    // stoka raises its price; the proxy still holds the old manifest pricing.
    pricing.store.base = 1500;
    const charged = w.charged();
    const count = charges(w);
    const signs = w.signCalls();
    const refused = await store(w, "qa-stale", 100);
    expect(refused.status).toBe(402);
    expect(refused.headers["x-stoka-proxy-error"]).toBe("payment_rejected");
    expect(w.signCalls() - signs).toBe(1); // never a second payment for that request
    expect(charges(w)).toBe(count);
    expect(w.charged()).toBe(charged);
    // The refused quote is in the ledger, rejected, its reservation released.
    const last = w.proxy.stores.ledger.latest().at(-1);
    expect(last?.state).toBe("rejected");

    // The app's retry takes the normal path (402, then one payment at the new price).
    const requests = seen(w, "store");
    const retry = await store(w, "qa-stale", 100);
    expect(retry.status).toBe(201);
    expect(retry.headers["x-stoka-proxy-paid"]).toBe("1900");
    expect(seen(w, "store") - requests).toBe(2);
    expect(w.charged() - charged).toBe(1900n);
    expect(charges(w) - count).toBe(1);
  });
});

describe("quote-ahead is off by default", () => {
  let w: ProxyWorld;
  beforeAll(async () => {
    w = await startProxyWorld();
  });
  afterAll(async () => {
    await w.close();
  });

  it("every store asks for its 402 first", async () => {
    for (let i = 0; i < 3; i++) {
      const requests = seen(w, "store");
      const r = await store(w, `off-${i}`, 100);
      expect(r.status).toBe(201);
      expect(seen(w, "store") - requests).toBe(2);
    }
  });
});
