import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curl, curlStore } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * Quote-ahead's remembered sizes (docs/configuration.md, Quote-ahead: "from an earlier store,
 * update or retrieve answer through this proxy"): with the documented `[store, retrieve]` (update
 * not opted in), an update through the proxy must still replace the remembered size, so the
 * next retrieve is not paid ahead at the old size and answered 402.
 */
const BASE = "http://test.api.stoka.space";

describe("quote_ahead: [store, retrieve], with an update on the normal path", () => {
  let w: ProxyWorld;
  beforeAll(async () => {
    w = await startProxyWorld((c) => {
      for (const h of c.paidHosts) h.quoteAhead = ["store", "retrieve"];
    });
  });
  afterAll(async () => {
    await w.close();
  });

  it("a retrieve after an update is priced at the updated size (200, not a rejected quote)", async () => {
    const store = (key: string, bytes: number) => curlStore(w.proxyUrl, key, bytes);
    const retrieve = (key: string) =>
      curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/retrieve/${key}` });
    // Templates for both routes (normal path), then the object, 100 bytes.
    expect((await store("t", 10)).status).toBe(201);
    expect((await retrieve("t")).status).toBe(200);
    expect((await store("obj", 100)).status).toBe(201);
    // The app updates it to 5000 bytes through the proxy (update is not quoted: normal path).
    const updated = await curl({
      proxy: w.proxyUrl,
      method: "PUT",
      url: `${BASE}/v1/object/obj`,
      body: Buffer.from("u".repeat(5000)),
    });
    expect(updated.status).toBe(200);
    const charged = w.charged();
    const r = await retrieve("obj");
    expect(r.headers["x-stoka-proxy-error"]).toBeUndefined();
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(5000);
    expect(w.charged() - charged).toBe(1500n); // 1000 + 100 × ceil(5000 / 1024)
    expect(w.proxy.stores.ledger.inState("rejected")).toHaveLength(0);
  });
});
