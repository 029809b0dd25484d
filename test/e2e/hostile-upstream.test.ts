import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { startHostileUpstream } from "../support/hostile-upstream.js";
import type { HostileAnswer, HostileUpstream } from "../support/hostile-upstream.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * A paid host that answers hostile 402s (deep, huge, odd JSON in the body or in
 * PAYMENT-REQUIRED) and hostile wallet-auth challenges. The proxy must answer a readable 402
 * (or a 502 for wallet auth) with nothing signed, never a 500, and keep serving.
 */
const HOST = "hostile.test";
const BASE = `http://${HOST}`;
const STOKA = "http://test.api.stoka.space";

let w: ProxyWorld;
let hostile: HostileUpstream;

beforeAll(async () => {
  hostile = await startHostileUpstream();
  w = await startProxyWorld((c, sandbox) => {
    // A paid host with a pinned payee (the emulator's, so an unguarded proxy would really sign)
    // and the sandbox budget (`match: {}`), so the whole payment path runs.
    c.paidHosts.push({ host: HOST, upstream: new URL(hostile.url), payTo: [sandbox.payTo] });
  });
}, 30_000);
afterAll(async () => {
  await w.close();
  await hostile.close();
});
beforeEach(() => {
  hostile.answers.clear();
  hostile.received.length = 0;
});

/** A requirement the proxy would pay (right network, asset, payee, price under the cap). */
function payable(extra: unknown = { areFeesSponsored: true }) {
  return {
    scheme: "exact",
    network: w.config.network,
    asset: w.config.asset,
    payTo: w.sandbox.payTo,
    amount: "1000",
    maxTimeoutSeconds: 120,
    extra,
  };
}

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

function payableBodyWith(deepJson: string): string {
  const text = JSON.stringify({
    x402Version: 2,
    accepts: [payable({ areFeesSponsored: true, deep: "DEEP" })],
  });
  return text.replace('"DEEP"', deepJson);
}

const json402 = (body: string): HostileAnswer => ({
  status: 402,
  headers: { "content-type": "application/json" },
  body,
});

/** Built when the test runs: the requirements need the running world's network, asset and payee. */
const cases: [string, () => HostileAnswer][] = [
  [
    "a body nested 100 000 deep beside an empty accepts",
    () => json402(`{"x402Version":2,"accepts":[],"junk":${nested(100_000)}}`),
  ],
  [
    "a payable body with an extra field nested 100 000 arrays deep",
    () => json402(payableBodyWith(nested(100_000))),
  ],
  [
    "a payable body with an extra field nested 20 000 objects deep",
    () => json402(payableBodyWith(deepObject(20_000))),
  ],
  [
    "a payable body with an extra field nested 1 000 deep (serialisable, still refused)",
    () => json402(payableBodyWith(nested(1_000))),
  ],
  [
    "a body larger than the challenge cap",
    () => json402(`{"x402Version":2,"accepts":[],"pad":"${"x".repeat(300_000)}"}`),
  ],
  ["a body that is JSON null", () => json402("null")],
  ["a body that is a JSON string", () => json402('"x402Version"')],
  ["a body that is a bare array of requirements", () => json402(JSON.stringify([{ x402Version: 2 }]))],
  [
    "accepts that is an object pretending to be a list",
    () => json402(JSON.stringify({ x402Version: 2, accepts: { 0: { scheme: "exact" }, length: 1 } })),
  ],
  [
    "a PAYMENT-REQUIRED header that is 5 000 arrays deep",
    () => ({ status: 402, headers: { "payment-required": Buffer.from(nested(5_000)).toString("base64") } }),
  ],
];

describe("hostile 402s from a paid host", () => {
  it.each(cases)("%s: 402 challenge_unreadable, nothing signed", async (_name, answer) => {
    hostile.answers.set("/v1/store", answer());
    const signsBefore = w.signCalls();
    const chargedBefore = w.charged();
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      body: Buffer.from("x"),
    });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("challenge_unreadable");
    const body = JSON.parse(res.body.toString()) as { proxy?: { code?: string } };
    expect(body.proxy?.code).toBe("challenge_unreadable");
    expect(w.signCalls()).toBe(signsBefore);
    expect(hostile.paidRequests()).toBe(0);
    expect(w.charged()).toBe(chargedBefore);
    // The proxy still answers, and still pays a well-behaved host.
    const ok = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${STOKA}/v1/store`,
      headers: { "X-Stoka-Key": "after-hostile" },
      body: Buffer.from("y".repeat(42)),
    });
    expect(ok.status).toBe(201);
  });

  it("a deep header is refused too (built by hand: nested inside a payable entry)", async () => {
    const requirement = JSON.stringify(payable({ areFeesSponsored: true, deep: "DEEP" })).replace(
      '"DEEP"',
      nested(2_000),
    );
    const header = Buffer.from(`{"x402Version":2,"accepts":[${requirement}]}`).toString("base64");
    hostile.answers.set("/v1/store", { status: 402, headers: { "payment-required": header } });
    const signsBefore = w.signCalls();
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      body: Buffer.from("x"),
    });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("challenge_unreadable");
    expect(w.signCalls()).toBe(signsBefore);
    expect(hostile.paidRequests()).toBe(0);
  });

  it("a deep manifest teaches no payee", async () => {
    const host = w.config.paidHosts.find((h) => h.host === HOST);
    if (!host) throw new Error("no hostile paid host");
    host.payTo = [];
    try {
      hostile.answers.set("/.well-known/stoka.json", {
        status: 200,
        headers: { "content-type": "application/json" },
        body: `{"x402":{"pay_to":"${w.sandbox.payTo}","network":"${w.config.network}","asset":"${w.config.asset}","x":${nested(100_000)}}}`,
      });
      hostile.answers.set("/v1/store", json402(JSON.stringify({ x402Version: 2, accepts: [payable()] })));
      const res = await curl({
        proxy: w.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        body: Buffer.from("x"),
      });
      expect(res.status).toBe(402);
      expect(res.headers["x-stoka-proxy-error"]).toBe("payee_unknown");
      expect(hostile.paidRequests()).toBe(0);
    } finally {
      host.payTo = [w.sandbox.payTo];
    }
  });
});

describe("hostile wallet-auth challenges from a paid host", () => {
  it.each([
    ["JSON null", "null"],
    ["a JSON number", "42"],
    ["nesting 100 000 deep", nested(100_000)],
    ["a challenge whose message is an object", JSON.stringify({ challenge_id: "c", message: { deep: [] } })],
  ])("%s: 502 wallet_auth_failed, nothing forwarded", async (_name, body) => {
    hostile.answers.set("/v1/auth/challenge", {
      status: 200,
      headers: { "content-type": "application/json" },
      body,
    });
    hostile.answers.set("/v1/object/k", { status: 204 });
    const res = await curl({ proxy: w.proxyUrl, method: "DELETE", url: `${BASE}/v1/object/k` });
    expect(res.status).toBe(502);
    expect(res.headers["x-stoka-proxy-error"]).toBe("wallet_auth_failed");
    expect(hostile.received.filter((r) => r.url === "/v1/object/k")).toHaveLength(0);
  });
});
