import { Keypair } from "@stellar/stellar-sdk";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  fetchOnceCurl,
  fetchOnceGo,
  fetchOncePython,
  fetchOnceUndici,
  undiciProxyAgent,
} from "../support/clients.js";
import type { StepResult } from "../support/clients.js";
import { startOfficialX402Server } from "../support/official-x402-server.js";
import type { OfficialX402Server } from "../support/official-x402-server.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * The proxy against a generic x402 v2 resource server built only from the official packages
 * (`@x402/express` 2.9.0 + `@x402/core` + `@x402/stellar`, settling through the official Stellar
 * facilitator). That server compares the payment's `accepted` with its own requirement by deep
 * equality, so anything but a verbatim echo is refused ("No matching payment requirements").
 * Every paid request must settle exactly once on that server, counted on its own RPC; every
 * refusal must settle nothing and sign nothing.
 */
let w: ProxyWorld;
let peer: OfficialX402Server;
let caFile: string;

// Names the apps use; each is a paid host whose upstream is the peer.
const PLAIN = "x402.test"; // upstream http://127.0.0.1:PORT
const SECURE = "x402s.test"; // upstream https://localhost:PORT (TLS both ways under CONNECT)
const WRONG_PAYEE = "x402-wrong-payee.test"; // pinned to a payee the peer does not use
const CAPPED = "x402-capped.test"; // a budget caps requests below the peer's price

beforeAll(async () => {
  w = await startProxyWorld(async (c, sb) => {
    peer = await startOfficialX402Server({
      chain: sb.chain,
      ca: sb.ca,
      https: true,
      // Unknown to the proxy: must come back exactly as sent (a number stays a number).
      extra: { tier: 3, note: "kept as is" },
      extensions: { "x-sandbox-note": { info: { version: 1 }, schema: { type: "object" } } },
    });
    const pinned = [peer.payTo];
    c.paidHosts.push(
      { host: PLAIN, upstream: new URL(peer.url), payTo: pinned },
      { host: SECURE, upstream: new URL(peer.httpsUrl), payTo: pinned },
      { host: WRONG_PAYEE, upstream: new URL(peer.url), payTo: [Keypair.random().publicKey()] },
      { host: CAPPED, upstream: new URL(peer.url), payTo: pinned },
      // Gateway mode: origin-form requests go to the gateway upstream, named by its host.
      { host: "127.0.0.1", upstream: new URL(peer.url), payTo: pinned },
    );
    c.gatewayUpstream = new URL(peer.url);
    c.budgets.push({ name: "capped", match: { hosts: [CAPPED] }, perRequestMax: 1000n, limits: [] });
  });
  caFile = w.config.tls.caCertFile ?? "";
}, 60_000);
afterAll(async () => {
  await w?.close();
  await peer?.close();
});

/** Runs one client request and checks: a 200 with the resource, exactly one settlement, one signature. */
async function expectPaidOnce(run: () => Promise<StepResult>): Promise<void> {
  const settled = peer.settlements().length;
  const signed = w.signCalls();
  const balance = w.sandbox.chain.balanceOf(w.sandbox.wallet.publicKey());
  const r = await run();
  expect(r.status, r.body.toString()).toBe(200);
  expect(JSON.parse(r.body.toString())).toEqual(peer.resourceBody);
  const news = peer.settlements().slice(settled);
  expect(news).toHaveLength(1);
  expect(news[0]).toMatchObject({
    from: w.sandbox.wallet.publicKey(),
    to: peer.payTo,
    amount: peer.price,
  });
  expect(r.paid).toBe(peer.price.toString());
  expect(r.tx).toBe(news[0]?.hash);
  expect(w.signCalls() - signed).toBe(1);
  expect(w.sandbox.chain.balanceOf(w.sandbox.wallet.publicKey())).toBe(balance - peer.price);
}

/** Runs one client request that the proxy must refuse with `code`: nothing signed, nothing settled. */
async function expectRefused(code: string, run: () => Promise<StepResult>): Promise<void> {
  const settled = peer.settlements().length;
  const signed = w.signCalls();
  const r = await run();
  expect(r.status).toBe(402);
  expect(r.paid).toBeNull();
  const body = JSON.parse(r.body.toString()) as { proxy?: { code?: string } };
  expect(body.proxy?.code).toBe(code);
  expect(peer.settlements().length).toBe(settled);
  expect(w.signCalls()).toBe(signed);
}

const url = (host: string, scheme = "http") => `${scheme}://${host}${peer.path}`;

describe("forward mode (HTTP_PROXY, absolute-form): paid once on the official server", () => {
  it("curl -x", async () => {
    await expectPaidOnce(() => fetchOnceCurl(w.proxyUrl, "GET", url(PLAIN)));
  });

  it("Python requests", async () => {
    await expectPaidOnce(() => fetchOncePython(w.proxyUrl, "GET", url(PLAIN)));
  });

  it("Go net/http", async () => {
    await expectPaidOnce(() => fetchOnceGo(w.proxyUrl, "GET", url(PLAIN)));
  }, 240_000);

  it("Node undici ProxyAgent", async () => {
    await expectPaidOnce(() => fetchOnceUndici(undiciProxyAgent(w.proxyUrl), "GET", url(PLAIN)));
  });
});

describe("CONNECT + TLS interception (HTTPS_PROXY) to the HTTPS peer: paid once", () => {
  it("curl --cacert", async () => {
    await expectPaidOnce(() => fetchOnceCurl(w.proxyUrl, "GET", url(SECURE, "https"), ["--cacert", caFile]));
  });

  it("Python requests (REQUESTS_CA_BUNDLE)", async () => {
    await expectPaidOnce(() =>
      fetchOncePython(w.proxyUrl, "GET", url(SECURE, "https"), { REQUESTS_CA_BUNDLE: caFile }),
    );
  });

  it("Go net/http (SSL_CERT_FILE)", async () => {
    await expectPaidOnce(() =>
      fetchOnceGo(w.proxyUrl, "GET", url(SECURE, "https"), { SSL_CERT_FILE: caFile }),
    );
  }, 240_000);

  it("Node undici ProxyAgent with the CA", async () => {
    const agent = undiciProxyAgent(w.proxyUrl, w.sandbox.ca.certPem);
    await expectPaidOnce(() => fetchOnceUndici(agent, "GET", url(SECURE, "https")));
  });
});

describe("gateway mode (origin-form to the proxy, the peer as gateway upstream): paid once", () => {
  const gateway = () => `${w.proxyUrl}${peer.path}`;

  it("curl", async () => {
    await expectPaidOnce(() => fetchOnceCurl(undefined, "GET", gateway()));
  });

  it("Python requests", async () => {
    await expectPaidOnce(() => fetchOncePython("", "GET", gateway()));
  });

  it("Go net/http", async () => {
    await expectPaidOnce(() => fetchOnceGo("", "GET", gateway()));
  }, 240_000);

  it("Node undici", async () => {
    await expectPaidOnce(() => fetchOnceUndici(new Agent(), "GET", gateway()));
  });
});

describe("refusals: nothing signed, nothing settled on the official server", () => {
  it.each([
    ["curl, forward", () => fetchOnceCurl(w.proxyUrl, "GET", url(WRONG_PAYEE))],
    ["undici, forward", () => fetchOnceUndici(undiciProxyAgent(w.proxyUrl), "GET", url(WRONG_PAYEE))],
    [
      "curl, CONNECT",
      () => fetchOnceCurl(w.proxyUrl, "GET", url(WRONG_PAYEE, "https"), ["--cacert", caFile]),
    ],
  ])("a payee that is not the pinned one: terms_rejected (%s)", async (_name, run) => {
    await expectRefused("terms_rejected", run);
  });

  it.each([
    ["curl, forward", () => fetchOnceCurl(w.proxyUrl, "GET", url(CAPPED))],
    ["Python, forward", () => fetchOncePython(w.proxyUrl, "GET", url(CAPPED))],
    ["curl, CONNECT", () => fetchOnceCurl(w.proxyUrl, "GET", url(CAPPED, "https"), ["--cacert", caFile])],
  ])("a price above the per-request cap: price_above_cap (%s)", async (_name, run) => {
    await expectRefused("price_above_cap", run);
  });
});

describe("the official facilitator's own view", () => {
  it("every settlement was verified first and costs the documented RPC calls", () => {
    const n = peer.settlements().length;
    expect(n).toBeGreaterThan(0);
    // One /verify from the resource server, one /settle (which verifies again) per payment.
    expect(peer.facilitatorCalls.get("verify")).toBe(n);
    expect(peer.facilitatorCalls.get("settle")).toBe(n);
    expect(peer.rpc.refusedSubmissions).toEqual([]);
  });
});
