import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/proxy/client-identity.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/** Team gateway clients: tokens (stored hashed) name the client; budgets can match clients. */
const BASE = "http://test.api.stoka.space";
const BODY = Buffer.from("t".repeat(42));
const TOKEN_A = "token-of-team-a";
const TOKEN_B = "token-of-team-b";

let w: ProxyWorld;
beforeAll(async () => {
  w = await startProxyWorld((c) => {
    c.clients = [
      { name: "team-a", tokenSha256: hashToken(TOKEN_A) },
      { name: "team-b", tokenSha256: hashToken(TOKEN_B) },
    ];
    c.budgets = [
      { name: "all", match: {}, limits: [{ period: { kind: "calendar", unit: "day" }, amount: 100_000n }] },
      {
        name: "team-a-day",
        match: { clients: ["team-a"] },
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 1400n }],
      },
    ];
  });
});
afterAll(async () => {
  await w.close();
});

const proxyWith = (user: string, token: string) => w.proxyUrl.replace("http://", `http://${user}:${token}@`);

describe("client identity", () => {
  it("forward mode without a token: 407 with Proxy-Authenticate", async () => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "x" },
      body: BODY,
    });
    expect(res.status).toBe(407);
    expect(res.headers["proxy-authenticate"]).toMatch(/Bearer realm="stoka-proxy"/);
    expect(w.signCalls()).toBe(0);
  });

  it("an unknown token: 407", async () => {
    const res = await curl({
      proxy: proxyWith("x", "wrong"),
      method: "GET",
      url: `${BASE}/.well-known/stoka.json`,
    });
    expect(res.status).toBe(407);
  });

  it("CONNECT without a token: 407", async () => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: `${BASE}:80/.well-known/stoka.json`,
      extra: ["--proxytunnel"],
    }).catch((e: Error) => ({ status: 0, error: e.message }));
    expect(String((res as { error?: string }).error ?? res.status)).toMatch(/407/);
  });

  it("each client's budget is its own; the ledger names the client", async () => {
    const a1 = await curl({
      proxy: proxyWith("team-a", TOKEN_A),
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "a1" },
      body: BODY,
    });
    expect(a1.status).toBe(201);
    const a2 = await curl({
      proxy: proxyWith("team-a", TOKEN_A),
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "a2" },
      body: BODY,
    });
    expect(a2.headers["x-stoka-proxy-error"]).toBe("budget_exceeded");
    expect(JSON.parse(a2.body.toString()).proxy.budget.name).toBe("team-a-day");
    // Gateway mode: Authorization: Bearer, consumed by the proxy (not forwarded to stoka).
    const b1 = await curl({
      method: "POST",
      url: `${w.proxyUrl}/v1/store`,
      headers: { "X-Stoka-Key": "b1", Authorization: `Bearer ${TOKEN_B}` },
      body: BODY,
    });
    expect(b1.status).toBe(201);
    const clients = w.proxy.stores.ledger.inState("settled").map((r) => r.client);
    expect(clients.sort()).toEqual(["team-a", "team-b"]);
    expect(w.logs()).not.toContain(TOKEN_A);
    expect(w.logs()).not.toContain(TOKEN_B);
  });

  it("gateway mode without a token: 401 with WWW-Authenticate", async () => {
    const res = await curl({
      method: "POST",
      url: `${w.proxyUrl}/v1/store`,
      headers: { "X-Stoka-Key": "nob" },
      body: BODY,
    });
    expect(res.status).toBe(401);
    expect(res.headers["www-authenticate"]).toMatch(/Bearer/);
  });
});
