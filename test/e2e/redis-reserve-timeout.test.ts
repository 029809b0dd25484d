import { afterEach, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { privateRedis } from "../support/redis-server.js";
import type { RedisServer } from "../support/redis-server.js";
import { tcpRelay } from "../support/tcp-relay.js";
import type { TcpRelay } from "../support/tcp-relay.js";

/**
 * Found by `npm run crash-test` (10 replicas on one Redis, a loaded machine): a reservation
 * whose Redis reply came after the client's command timeout (2 s) was refused to the app
 * (402 budget_unavailable) but made in Redis, with no ledger row. The budget then held money
 * that nothing spent and no ledger explains (the crash test saw 18 charged, the budget full
 * at 20, 0 indeterminate) until `budgets restore`. The store now takes such a reservation back.
 */
const BASE = "http://test.api.stoka.space";
const PRICE = 1400n;
const BODY = Buffer.from("k".repeat(42));

let world: ProxyWorld | undefined;
let relay: TcpRelay | undefined;
let redis: RedisServer | undefined;
afterEach(async () => {
  await world?.close();
  await relay?.close();
  await redis?.stop();
  world = relay = redis = undefined;
});

const store = (w: ProxyWorld, key: string) =>
  curl({
    proxy: w.proxyUrl,
    method: "POST",
    url: `${BASE}/v1/store`,
    headers: { "X-Stoka-Key": key },
    body: BODY,
  });

describe("a Redis reply later than the command timeout", () => {
  it("leaves the budget as the ledger says: the next request still fits", async () => {
    redis = await privateRedis();
    await redis.start();
    relay = await tcpRelay(Number(new URL(redis.url).port));
    const via = `redis://127.0.0.1:${relay.port}`;
    world = await startProxyWorld((c) => {
      c.budgetStore = { kind: "redis", url: via, prefix: "timeout" };
      c.budgets = [
        {
          name: "two",
          match: {},
          limits: [{ period: { kind: "calendar", unit: "day" }, amount: 2n * PRICE }],
        },
      ];
    });
    const w = world;
    expect((await store(w, "first")).status).toBe(201);

    relay.lag(3000); // past ioredis' 2 s commandTimeout; Redis itself runs the script at once
    const slow = await store(w, "slow");
    expect(slow.status).toBe(402);
    expect(slow.headers["x-stoka-proxy-error"]).toBe("budget_unavailable");
    relay.lag(0);
    await new Promise((r) => setTimeout(r, 3500)); // the late reply arrives and is dropped
    expect(w.charged()).toBe(PRICE);
    // The ledger knows one payment; the budget (2 payments) must have room for a second.
    expect(w.proxy.stores.ledger.latest().map((r) => r.state)).toEqual(["settled"]);
    const next = await store(w, "next");
    expect(next.headers["x-stoka-proxy-error"]).toBeUndefined();
    expect(next.status).toBe(201);
  }, 60_000);
});
