import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import type { PaymentSummary } from "../../src/ledger/ledger.js";
import { adminAuthorized, statusRoutes } from "../../src/observability/status-routes.js";
import { StatusSource } from "../../src/observability/status-source.js";
import type { StatusReads } from "../../src/observability/status-source.js";

/** The status page's admin auth, its cache and how it says the budget store is down. */
const TOKEN = "admin-token-0123456789";
const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("adminAuthorized", () => {
  it.each<[string, string | undefined, boolean]>([
    ["Bearer", `Bearer ${TOKEN}`, true],
    ["bearer, any case", `bearer ${TOKEN}`, true],
    ["Basic, token as password", `Basic ${b64(`operator:${TOKEN}`)}`, true],
    ["Basic, empty user", `Basic ${b64(`:${TOKEN}`)}`, true],
    ["Basic, token as user", `Basic ${b64(`${TOKEN}:`)}`, false],
    ["Basic, no colon", `Basic ${b64(TOKEN)}`, false],
    ["wrong token", "Bearer nope", false],
    ["a prefix of the token", `Bearer ${TOKEN.slice(0, -1)}`, false],
    ["none", undefined, false],
    ["another scheme", `Digest ${TOKEN}`, false],
  ])("%s", (_name, header, ok) => {
    expect(adminAuthorized(header, TOKEN)).toBe(ok);
  });
});

const config = resolveConfig(
  configFileSchema.parse({
    stoka_env: "test",
    budgets: [{ name: "team", per_request_max: "0.01 USDC", limits: { day: "1 USDC", month: "10 USDC" } }],
  }),
  "(test)",
  {},
);

const payment = (id: string, state: PaymentSummary["state"], amount: bigint, at: number): PaymentSummary =>
  ({
    paymentId: id,
    state,
    amount,
    route: "store",
    client: "app",
    startedAtMs: at,
    atMs: at,
    tx: null,
    reason: null,
  }) as PaymentSummary;

function reads(over: Partial<StatusReads> = {}): StatusReads & { latestCalls: number } {
  const r = {
    latestCalls: 0,
    latest() {
      r.latestCalls += 1;
      return Promise.resolve([
        payment("p1", "settled", 1_400n, NOW),
        payment("p2", "indeterminate", 700n, NOW),
      ]);
    },
    used: () => Promise.resolve(2_100n),
    reserved: () => Promise.resolve(700n),
    ...over,
  };
  return r;
}
const NOW = Date.parse("2026-03-15T12:00:00Z");

describe("StatusSource", () => {
  it("builds the view from the reads: limits with spent and reserved, reset times", async () => {
    const view = await new StatusSource({
      config,
      reads: reads(),
      caCertPath: () => undefined,
      now: () => NOW,
    }).view();
    expect(view.budgets[0]?.limits.map((l) => [l.period, l.spent, l.reserved, l.resetsAtMs])).toEqual([
      ["day", 1_400n, 700n, Date.parse("2026-03-16T00:00:00Z")],
      ["month", 1_400n, 700n, Date.parse("2026-04-01T00:00:00Z")],
    ]);
    expect(view.today.total).toBe(2_100n);
    expect(view.payments.indeterminateCount).toBe(1);
    expect(view.ca).toBeUndefined();
  });

  it("reads once per ttl, however many callers, and again after it", async () => {
    let now = NOW;
    const r = reads();
    const source = new StatusSource({ config, reads: r, caCertPath: () => undefined, now: () => now });
    await Promise.all(Array.from({ length: 50 }, () => source.view()));
    now += 999;
    await source.view();
    expect(r.latestCalls).toBe(1);
    now += 2;
    await source.view();
    expect(r.latestCalls).toBe(2);
  });

  it("a slow build is kept ten times as long as it took", async () => {
    let now = NOW;
    const r = reads();
    const slowLatest = r.latest.bind(r);
    r.latest = async () => {
      const until = performance.now() + 150;
      while (performance.now() < until) {
        /* a large ledger, read on this thread */
      }
      return slowLatest();
    };
    const source = new StatusSource({ config, reads: r, caCertPath: () => undefined, now: () => now });
    await source.view();
    now += 1_400; // past the 1 s ttl, within 10 × 150 ms
    await source.view();
    expect(r.latestCalls).toBe(1);
    now += 5_000;
    await source.view();
    expect(r.latestCalls).toBe(2);
  });

  it("says the budget store is unavailable, without a password in the words", async () => {
    const r = reads({
      used: () => Promise.reject(new Error("connect ECONNREFUSED redis://:hunter2-password@10.0.0.1:6379")),
    });
    const view = await new StatusSource({
      config,
      reads: r,
      caCertPath: () => undefined,
      now: () => NOW,
    }).view();
    expect(view.budgets).toEqual([]);
    expect(view.budgetsUnavailable).toMatch(/cannot be read/);
    expect(view.budgetsUnavailable).not.toContain("hunter2-password");
  });
});

describe("statusRoutes", () => {
  async function serve(source: StatusSource, token?: string) {
    const denied: string[] = [];
    const route = statusRoutes({ source, token, onDenied: (a) => denied.push(a) });
    const server = http.createServer((req, res) => {
      void route(req, res).then((handled) => {
        if (!handled) res.writeHead(404).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { url, denied, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  it("serves the page with its headers, refuses other methods, passes other paths", async () => {
    const s = await serve(new StatusSource({ config, reads: reads(), caCertPath: () => undefined }));
    try {
      const page = await fetch(`${s.url}/`);
      expect(page.status).toBe(200);
      expect(page.headers.get("content-security-policy")).toMatch(
        /^default-src 'none'.*frame-ancestors 'none'/,
      );
      expect(page.headers.get("x-frame-options")).toBe("DENY");
      expect(await page.text()).toContain("team");
      expect((await fetch(`${s.url}/`, { method: "POST" })).status).toBe(405);
      expect((await fetch(`${s.url}/other`)).status).toBe(404);
      expect(s.denied).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it("with a token: 401 with a Basic challenge, told as a denial; 503 when the ledger cannot be read", async () => {
    const failing = reads({ latest: () => Promise.reject(new Error("SQLITE_BUSY at /secret/path")) });
    const s = await serve(new StatusSource({ config, reads: failing, caCertPath: () => undefined }), TOKEN);
    try {
      const refused = await fetch(`${s.url}/`);
      expect(refused.status).toBe(401);
      expect(refused.headers.get("www-authenticate")).toMatch(/^Basic realm="stoka-proxy status"/);
      expect(s.denied.length).toBe(1);
      const down = await fetch(`${s.url}/`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(down.status).toBe(503);
      expect(await down.text()).not.toContain("/secret/path");
    } finally {
      await s.close();
    }
  });
});
