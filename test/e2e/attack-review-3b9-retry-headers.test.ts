import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ledger } from "../../src/ledger/ledger.js";
import { createLogger } from "../../src/observability/logger.js";
import { Resilience } from "../../src/proxy/resilience.js";
import { UpstreamError } from "../../src/http/upstream-client.js";
import { DEFAULT_RETRY_POLICY, carriesPayment, retryPolicyFor } from "../../src/resilience/retry-policy.js";
import type { RetryPolicy } from "../../src/resilience/retry-policy.js";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { curl } from "../support/clients.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { raw, startRecorder } from "../support/attack-review-3b9-recorder.js";
import type { Recorder } from "../support/attack-review-3b9-recorder.js";

/**
 * Attack review of 48d9dac, areas 2 and 4, against the proxy process (its sources under tsx) with a
 * recording server between it and the sandbox emulator:
 *  2. retryPolicyFor returns the shared defaults object for a route without an override: no
 *     caller may change it (another route's retries, or a paid attempt retried = paid twice);
 *     carriesPayment as a loop: an app's own payment header, in any casing, even empty, is
 *     sent exactly once.
 *  4. prepareRequest makes one header copy (withoutHopByHop): hop-by-hop and Connection-named
 *     headers stripped, the paid retry is the first request plus the payment header only, the
 *     proxy's payment/Authorization never comes back to the app or into the log.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
// The sources under tsx, as the other process tests run them (a fresh clone has no dist/).
const CLI = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
const HOST = "test.api.stoka.space";
const BASE = `http://${HOST}`;

let sb: Sandbox;
let rec: Recorder;
let p: ProxyProcess;
let dataDir: string;

beforeAll(async () => {
  sb = await startSandbox();
  rec = await startRecorder(sb.emulator.httpUrl);
  const written = writeProxyConfig(sb, {
    budgets: [{ name: "day", limits: { day: "1 USDC" } }],
    log_level: "debug",
    paid_hosts: [{ host: HOST, upstream: rec.url }],
    gateway: { upstream: rec.url },
    resilience: {
      retry: { base_delay_ms: 5, max_delay_ms: 20, routes: { retrieve: { max_attempts: 1 } } },
      paid_resend: { max_resends: 2, retry_after_cap_ms: 2000 },
    },
  });
  dataDir = written.dataDir;
  p = await startProxyProcess(sb, written.configPath, written.dataDir, { cli: CLI });
}, 60_000);

afterAll(async () => {
  await p?.stop("SIGKILL");
  await rec?.close();
  await sb?.close();
});

function ledgerRows() {
  const db = openDatabase(join(dataDir, "stoka-proxy.db"));
  try {
    return new Ledger(db).latest();
  } finally {
    db.close();
  }
}
const charged = () => sb.emulator.chargedTotal(sb.wallet.publicKey());
const unavailable = () => ({ status: 503, body: "down" });

describe("attack: retry policy shared default (retry-policy.ts retryPolicyFor)", () => {
  it("routes without an override keep 3 sends, the override keeps 1, however they interleave", async () => {
    rec.decide = unavailable;
    const sends = async (method: string, path: string) => {
      rec.seen.length = 0;
      const r = await curl({
        proxy: p.url,
        method,
        url: `${BASE}${path}`,
        ...(method === "GET" ? {} : { body: Buffer.from("b") }),
      });
      expect(r.status).toBe(503);
      return rec.seen.length;
    };
    const got: string[] = [];
    for (let round = 0; round < 3; round++) {
      got.push(`store=${await sends("POST", "/v1/store")}`);
      got.push(`retrieve=${await sends("GET", "/v1/retrieve/k")}`);
      got.push(`update=${await sends("PUT", "/v1/object/k")}`);
      got.push(`other=${await sends("GET", "/nothing/here")}`);
    }
    expect(got).toEqual(
      Array.from({ length: 3 }, () => ["store=3", "retrieve=1", "update=3", "other=3"]).flat(),
    );
    rec.decide = () => "forward";
  }, 60_000);

  it("a frozen default policy: sendUnpaid never writes to the object it is handed", async () => {
    const frozen: RetryPolicy = Object.freeze({ ...DEFAULT_RETRY_POLICY, baseDelayMs: 1, maxDelayMs: 2 });
    const routes = Object.freeze({ retrieve: Object.freeze({ maxAttempts: 1 }) });
    expect(retryPolicyFor(frozen, routes, "store")).toBe(frozen); // the shared object itself
    const r = new Resilience(
      {
        retry: frozen,
        retryRoutes: routes,
        rateLimit: null,
        breaker: null,
        breakerRoutes: {},
        idempotency: null,
        resend: { maxResends: 0, safetyMarginMs: 0, retryAfterCapMs: 0 },
      } as never,
      { stopped: false, dryRun: false },
      createLogger("silent"),
      () => Date.now(),
    );
    let calls = 0;
    const fail = () => {
      calls += 1;
      return Promise.reject(new UpstreamError("connect", "refused"));
    };
    for (const route of ["store", "other", "store"]) {
      calls = 0;
      await expect(
        r.sendUnpaid({ host: "h", route, headers: {}, gone: () => false }, fail),
      ).rejects.toThrow();
      expect(calls).toBe(3);
    }
    calls = 0;
    await expect(
      r.sendUnpaid({ host: "h", route: "store", headers: { "X-Payment": "" }, gone: () => false }, fail),
    ).rejects.toThrow();
    expect(calls).toBe(1);
    expect(frozen).toEqual({ ...DEFAULT_RETRY_POLICY, baseDelayMs: 1, maxDelayMs: 2 });
  });

  it("carriesPayment: any casing, empty values, own keys only", () => {
    expect(carriesPayment({ "X-PAYMENT": "" })).toBe(true);
    expect(carriesPayment({ "pAyMeNt-SiGnAtUrE": "x" })).toBe(true);
    expect(carriesPayment(Object.assign(Object.create(null) as object, { "x-payment": undefined }))).toBe(
      true,
    );
    expect(carriesPayment({ "x-payments": "x", "payment-signature-x": "y" })).toBe(false);
    const inherited = Object.create({ "x-payment": "from the prototype" }) as Record<string, unknown>;
    expect(carriesPayment(inherited)).toBe(false); // as Object.keys() did
  });

  it("an app's own payment header (any casing, empty) is sent once, even on 503; the proxy signs nothing", async () => {
    rec.decide = unavailable;
    const before = charged();
    const rows = ledgerRows().length;
    for (const h of [
      "X-PAYMENT: app-pays-1",
      "payment-signature: app-pays-2",
      "X-Payment;",
      "x-PaYmEnT: a",
    ]) {
      rec.seen.length = 0;
      const r = await curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: {},
        body: Buffer.from("q"),
        extra: ["-H", h],
      });
      expect(r.status, h).toBe(503);
      expect(rec.seen.length, h).toBe(1);
      const s = rec.seen[0];
      expect(s?.headers["x-payment"] !== undefined || s?.headers["payment-signature"] !== undefined, h).toBe(
        true,
      );
    }
    expect(charged()).toBe(before);
    expect(ledgerRows().length).toBe(rows);
    rec.decide = () => "forward";
  }, 60_000);

  it("a proxy-paid attempt answered 503 is resent only with the same header: one signature, nothing charged twice", async () => {
    // Unpaid sends go to the emulator (402); every paid one is answered 503 here, unforwarded.
    rec.decide = (s) =>
      s.headers["x-payment"] ? { status: 503, headers: { "retry-after": "0" }, body: "busy" } : "forward";
    rec.seen.length = 0;
    const before = charged();
    const rowsBefore = ledgerRows().length;
    const r = await curl({
      proxy: p.url,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "paid-503" },
      body: Buffer.from("z".repeat(42)),
    });
    rec.decide = () => "forward";
    const paid = rec.seen.filter((s) => s.headers["x-payment"]);
    const unpaid = rec.seen.filter((s) => !s.headers["x-payment"]);
    expect(unpaid.map((s) => `${s.method} ${s.url}`).filter((u) => !u.includes("well-known"))).toEqual([
      "POST /v1/store",
    ]);
    if (process.env.ATTACK_DEBUG)
      console.log(
        rec.seen.map((s) => `${s.method} ${s.url} ${s.headers["x-payment"] ? "paid" : ""}`),
        r.status,
        r.body.toString(),
      );
    expect(paid.length).toBeGreaterThanOrEqual(1);
    expect(paid.length).toBeLessThanOrEqual(3); // one send + max_resends 2
    expect(new Set(paid.map((s) => s.headers["x-payment"])).size).toBe(1);
    expect(r.status).not.toBe(201);
    expect(charged()).toBe(before);
    // The money that may have moved is on record (one row, not lost, not doubled).
    const rows = ledgerRows();
    expect(rows.length).toBe(rowsBefore + 1);
    expect(rows.map((x) => String(x.state))).toContain("indeterminate");
  }, 60_000);
});

describe("attack: one header copy in prepareRequest (prepare.ts)", () => {
  it("hop-by-hop and Connection-named headers go, the paid retry differs from the first send by the payment only", async () => {
    rec.seen.length = 0;
    const before = charged();
    const body = "h".repeat(42);
    const port = Number(new URL(p.url).port);
    const a = await raw(
      port,
      `POST ${BASE}/v1/store HTTP/1.1\r\nHost: ${HOST}\r\nX-Stoka-Key: hdr-1\r\nContent-Length: ${body.length}\r\n` +
        `Connection: close, X-Secret-Hop\r\nX-Secret-Hop: s3cr3t-hop\r\nProxy-Authorization: Basic cHJveHk6cGFzcw==\r\n` +
        `Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nAuthorization: Bearer app-own-token\r\n\r\n${body}`,
    );
    expect(a.status).toBe(201);
    expect(charged()).toBe(before + 1400n);
    expect(rec.seen.length).toBe(2);
    const [first, paid] = rec.seen as [(typeof rec.seen)[0], (typeof rec.seen)[0]];
    for (const s of [first, paid]) {
      for (const gone of ["x-secret-hop", "proxy-authorization", "keep-alive", "te", "proxy-connection"])
        expect(s.headers[gone], gone).toBeUndefined();
      expect(s.headers.host).toBe(`127.0.0.1:${rec.port}`);
      expect(String(s.headers.via)).toMatch(/stoka-proxy-/);
      expect(s.headers.authorization).toBe("Bearer app-own-token");
    }
    expect(first.headers["x-payment"]).toBeUndefined();
    const diff = Object.keys(paid.headers).filter(
      (k) => JSON.stringify(paid.headers[k]) !== JSON.stringify(first.headers[k]) && k !== "connection",
    );
    expect(diff).toEqual(["x-payment"]);
    // The payment header never comes back to the app nor into the proxy's log.
    const header = String(paid.headers["x-payment"]);
    expect(a.text.toLowerCase()).not.toContain("x-payment:");
    expect(a.text).not.toContain(header.slice(0, 40));
    expect(p.output()).not.toContain(header.slice(0, 40));
    expect(p.output()).not.toContain("app-own-token");
    expect(p.output()).not.toContain("s3cr3t-hop");
    expect(p.output()).not.toContain("cHJveHk6cGFzcw");
  }, 60_000);

  it("a wallet-signed route: the proxy's Authorization: Stellar goes upstream only, never to the app or the log", async () => {
    rec.seen.length = 0;
    const port = Number(new URL(p.url).port);
    const a = await raw(
      port,
      `GET ${BASE}/v1/me/usage HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
    );
    expect(a.status).toBe(200);
    const signed = rec.seen.find((s) => String(s.headers.authorization ?? "").startsWith("Stellar "));
    expect(signed, JSON.stringify(rec.seen.map((s) => s.url))).toBeDefined();
    expect(signed?.url).toBe("/v1/me/usage");
    const auth = String(signed?.headers.authorization);
    const sig = auth.split(":").pop() as string;
    expect(sig).toMatch(/^[0-9a-f]{128}$/);
    expect(a.text).not.toContain(sig);
    expect(p.output()).not.toContain(sig);
    // An app's own Authorization on such a route is sent as it is (replace_authorization false).
    rec.seen.length = 0;
    const b = await raw(
      port,
      `GET ${BASE}/v1/me/usage HTTP/1.1\r\nHost: ${HOST}\r\nAuthorization: Bearer mine\r\nConnection: close\r\n\r\n`,
    );
    expect(b.status).toBeGreaterThan(0);
    expect(rec.seen.every((s) => s.url !== "/v1/me/usage" || s.headers.authorization === "Bearer mine")).toBe(
      true,
    );
  }, 60_000);
});
