import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Keypair } from "@stellar/stellar-sdk";
import type { ProxyConfig } from "../../src/config/config.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { parseAmount } from "../../src/stellar/amount.js";
import { NETWORKS } from "../../src/stellar/networks.js";
import { CommandPaymentSigner } from "../../src/wallet/command-payment-signer.js";
import { decodeBase64Json } from "../../src/x402/payment-header.js";
import { curl } from "../support/clients.js";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { CountingSigner, startProxyWorld, withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { resetSwitches } from "../support/sandbox-fixture.js";
import { directClient } from "../support/sandbox-fixture.js";

/** The payment state machine through the real proxy, against the emulator's fault switches. */
const BASE = "http://test.api.stoka.space";
const BODY = Buffer.from("b".repeat(42));

let w: ProxyWorld;
let origin: Origin;
beforeAll(async () => {
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = 1500;
    // The outcome table, one attempt at a time: it makes payment failures and 429s on purpose.
    // Retries, rate limits and the breaker have their own tests (test/e2e/resilience-*.test.ts).
    c.resilience.retry.maxAttempts = 1;
    c.resilience.rateLimit = null;
    c.resilience.breaker = null;
  });
  origin = await startOrigin();
});
afterAll(async () => {
  await origin.close();
  await w.close();
});
beforeEach(() => resetSwitches(w.sandbox, 0));

const store = (world: ProxyWorld, key: string, body = BODY, headers: Record<string, string> = {}) =>
  curl({
    proxy: world.proxyUrl,
    method: "POST",
    url: `${BASE}/v1/store`,
    headers: { "X-Stoka-Key": key, ...headers },
    body,
  });

const withWorld = withProxyWorld;

function budgetUsed(world: ProxyWorld): Promise<bigint> {
  const b = world.config.budgets[0];
  if (!b) throw new Error("no budget");
  const limit = b.limits[0];
  if (!limit) throw new Error("no limit");
  return world.proxy.stores.budgets.used(b, limit, Date.now());
}

describe("challenge forms", () => {
  it.each([
    ["x402v1", "x-payment"],
    ["x402v2", "payment-signature"],
    ["stoka", "x-payment"],
  ] as const)("%s is paid with %s", async (form, _header) => {
    w.sandbox.emulator.switches.challengeForm = form;
    const before = w.charged();
    const res = await store(w, `form-${form}`);
    expect(res.status).toBe(201);
    expect(res.headers["x-stoka-proxy-paid"]).toBe("1400");
    expect(w.charged() - before).toBe(1400n);
    if (form === "x402v2") expect(res.headers["payment-response"]).toBeDefined();
    else expect(res.headers["x-payment-response"]).toBeDefined();
  });
});

describe("echo, never rebuild (the emulator in strict mode compares `accepted`)", () => {
  it.each(["stoka", "x402v1", "x402v2"] as const)(
    "%s: unknown requirement fields and their types come back verbatim, and it is paid once",
    async (form) => {
      w.sandbox.emulator.switches.challengeForm = form;
      w.sandbox.emulator.switches.requirementExtras = { futureField: 7, nested: { ratio: 0.5, on: false } };
      const before = w.charged();
      const signs = w.signCalls();
      const res = await store(w, `echo-${form}`);
      expect(res.status, res.body.toString()).toBe(201);
      expect(w.charged() - before).toBe(1400n);
      expect(w.signCalls() - signs).toBe(1);
      const sent = decodeBase64Json(w.signer()?.produced.at(-1) ?? "") as Record<string, unknown>;
      if (form === "x402v1") {
        expect(Object.keys(sent).sort()).toEqual(["network", "payload", "scheme", "x402Version"]);
        expect(sent.x402Version).toBe(1);
      } else {
        expect(sent.accepted).toMatchObject({ futureField: 7, nested: { ratio: 0.5, on: false } });
      }
    },
  );
});

describe("pinned terms: a violation is refused with nothing signed", () => {
  // Payees are pinned explicitly here, so the manifest (which names testnet) is not consulted.
  const pin = (c: ProxyConfig, sb: Sandbox) => c.paidHosts.forEach((h) => (h.payTo = [sb.payTo]));
  const cases: [string, (c: ProxyConfig, sb: Sandbox) => void, RegExp][] = [
    [
      "a payee that is not allowed",
      (c) => c.paidHosts.forEach((h) => (h.payTo = [Keypair.random().publicKey()])),
      /payee/,
    ],
    ["another network", (c, sb) => (pin(c, sb), (c.network = "stellar:pubnet")), /network/],
    ["another asset", (c, sb) => (pin(c, sb), (c.asset = NETWORKS["stellar:pubnet"].usdcAsset)), /asset/],
    ["a timeout above the bound", (c) => (c.terms.maxTimeoutSeconds = 60), /maxTimeoutSeconds/],
    ["a timeout below the bound", (c) => (c.terms.minTimeoutSeconds = 300), /maxTimeoutSeconds/],
  ];
  it.each(cases)("%s", async (_name, configure, reason) => {
    await withWorld(configure, async (world) => {
      const res = await store(world, "terms");
      expect(res.status).toBe(402);
      expect(res.headers["x-stoka-proxy-error"]).toBe("terms_rejected");
      const body = JSON.parse(res.body.toString()) as {
        accepts: unknown[];
        proxy: { code: string; reason: string };
      };
      expect(body.accepts).toHaveLength(1); // the upstream's requirements are kept for the app
      expect(body.proxy.code).toBe("terms_rejected");
      expect(body.proxy.reason).toMatch(reason);
      expect(world.signCalls()).toBe(0);
      expect(world.charged()).toBe(0n);
      expect(await budgetUsed(world)).toBe(0n);
    });
  });

  it("an unknown payee (none configured, manifest for another network) is refused", async () => {
    await withWorld(
      (c) => (c.network = "stellar:pubnet"),
      async (world) => {
        const res = await store(world, "unknown-payee");
        expect(res.headers["x-stoka-proxy-error"]).toBe("payee_unknown");
        expect(world.signCalls()).toBe(0);
      },
    );
  });

  it("a 402 from a host that is not a paid host passes through unpaid and untouched", async () => {
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${origin.url}/pay-me` });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBeUndefined();
    expect(JSON.parse(res.body.toString())).toMatchObject({ x402Version: 2 });
    expect(res.headers["x-hop"]).toBeUndefined(); // named in Connection: hop-by-hop
    expect(res.headers.via).toMatch(/stoka-proxy-/);
    expect(w.signCalls()).toBe(signs);
  });

  it("price above the per-request cap is refused, naming the budget", async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 1); // 820 200 atomic > 0.05 USDC
    const res = await store(w, "too-big", big);
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("price_above_cap");
    const body = JSON.parse(res.body.toString()) as { proxy: { price: string; budget: { name: string } } };
    expect(body.proxy).toMatchObject({
      price: "820200",
      budget: { name: "sandbox", per_request_max: "500000" },
    });
  });

  it("no budget covering the route: nothing is paid", async () => {
    await withWorld(
      (c) =>
        (c.budgets = [
          {
            name: "reads",
            match: { routes: ["retrieve"] },
            limits: [{ period: { kind: "calendar", unit: "day" }, amount: 10_000n }],
          },
        ]),
      async (world) => {
        const res = await store(world, "nobudget");
        expect(res.headers["x-stoka-proxy-error"]).toBe("no_budget");
        expect(world.signCalls()).toBe(0);
      },
    );
  });

  it("a spent budget refuses with its name, period, limit and spend", async () => {
    await withWorld(
      (c) =>
        (c.budgets = [
          { name: "tiny", match: {}, limits: [{ period: { kind: "calendar", unit: "day" }, amount: 3000n }] },
        ]),
      async (world) => {
        expect((await store(world, "b1")).status).toBe(201);
        expect((await store(world, "b2")).status).toBe(201);
        const third = await store(world, "b3");
        expect(third.status).toBe(402);
        expect(third.headers["x-stoka-proxy-error"]).toBe("budget_exceeded");
        const body = JSON.parse(third.body.toString()) as { proxy: Record<string, unknown> };
        expect(body.proxy).toMatchObject({
          price: "1400",
          budget: { name: "tiny", period: "day", limit: "3000", spent: "2800" },
        });
        expect(world.charged()).toBe(2800n);
        expect(world.signCalls()).toBe(2);
      },
    );
  });

  it("no signer: refused, nothing paid", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        const res = await store(world, "nosigner");
        expect(res.headers["x-stoka-proxy-error"]).toBe("no_signer");
        expect(world.charged()).toBe(0n);
      },
      { signer: undefined },
    );
  });

  it("an unreadable 402 is refused as challenge_unreadable", async () => {
    w.sandbox.emulator.addFault({ kind: "bad_challenge" });
    const signs = w.signCalls();
    const res = await store(w, "garbled");
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("challenge_unreadable");
    expect(w.signCalls()).toBe(signs);
  });
});

describe("the outcome table, one row at a time (at most one payment each)", () => {
  async function run(key: string, headers: Record<string, string> = {}) {
    const signs = w.signCalls();
    const charged = w.charged();
    const used = await budgetUsed(w);
    const res = await store(w, key, BODY, headers);
    return {
      res,
      signed: w.signCalls() - signs,
      charged: w.charged() - charged,
      budget: (await budgetUsed(w)) - used,
    };
  }

  it("2xx with receipt: settled, X-Stoka-Proxy-Paid/Tx, receipt passed through", async () => {
    const r = await run("ok");
    expect(r.res.status).toBe(201);
    expect(r.res.headers["x-stoka-proxy-paid"]).toBe("1400");
    const receipt = decodeBase64Json(r.res.headers["x-payment-response"] ?? "") as { transaction: string };
    expect(r.res.headers["x-stoka-proxy-tx"]).toBe(receipt.transaction);
    expect([r.signed, r.charged, r.budget]).toEqual([1, 1400n, 1400n]);
  });

  it("2xx without receipt: settled, counted, no tx header", async () => {
    w.sandbox.emulator.addFault({ kind: "omit_receipt" });
    const r = await run("noreceipt");
    expect(r.res.status).toBe(201);
    expect(r.res.headers["x-stoka-proxy-paid"]).toBe("1400");
    expect(r.res.headers["x-stoka-proxy-tx"]).toBeUndefined();
    expect([r.signed, r.charged, r.budget]).toEqual([1, 1400n, 1400n]);
    expect(w.logs()).toMatch(/"outcome":"settled_no_receipt"/);
  });

  it("second 402 (settlement failed): handed back with its reason, released, never re-paid", async () => {
    w.sandbox.emulator.addFault({ kind: "settle_fails" });
    const r = await run("settlefail");
    expect(r.res.status).toBe(402);
    expect(r.res.headers["x-stoka-proxy-error"]).toBe("payment_rejected");
    expect(JSON.parse(r.res.body.toString()).error).toMatch(/settlement failed/);
    expect([r.signed, r.charged, r.budget]).toEqual([1, 0n, 0n]);
  });

  it("price changed between 402 and retry: second 402, not paid again", async () => {
    w.sandbox.emulator.addFault({ kind: "price_change", priceDelta: 300 });
    const r = await run("moved");
    expect(r.res.status).toBe(402);
    expect(r.res.headers["x-stoka-proxy-error"]).toBe("payment_rejected");
    expect([r.signed, r.charged, r.budget]).toEqual([1, 0n, 0n]);
  });

  it("4xx after the paid retry (PUT on a foreign key): upstream answer, released", async () => {
    const other = directClient(w.sandbox);
    await other.paid("POST", "/v1/store", { headers: { "x-stoka-key": "theirs" }, body: "data" });
    const signs = w.signCalls();
    const res = await curl({
      proxy: w.proxyUrl,
      method: "PUT",
      url: `${BASE}/v1/object/theirs`,
      body: Buffer.from("mine now"),
    });
    expect(res.status).toBe(404);
    expect(w.signCalls() - signs).toBe(1);
    expect(w.charged()).toBe(w.sandbox.emulator.chargedTotal(w.sandbox.wallet.publicKey()));
    expect(w.logs()).toMatch(/"route":"update"[^\n]*"outcome":"rejected"/);
  });

  it.each([
    ["5xx after settling", "error_after_settle", 502, "payment_indeterminate"],
    ["dropped connection after settling", "drop_after_settle", 502, "payment_indeterminate"],
    ["timeout after settling", "slow", 504, "payment_indeterminate_timeout"],
  ] as const)("%s: indeterminate, stays spent, not retried", async (_name, kind, status, code) => {
    w.sandbox.emulator.addFault({ kind, delayMs: 4000 });
    const r = await run(`indet-${kind}`);
    expect(r.res.status).toBe(status);
    expect(r.res.headers["x-stoka-proxy-error"]).toBe(code);
    const body = JSON.parse(r.res.body.toString()) as { code: string; payment_id: string; hint: string };
    expect(body.code).toBe(code);
    expect(body.payment_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(body.hint).toMatch(/do not resend/);
    // The emulator did charge; the budget keeps it counted; one signature only.
    expect([r.signed, r.charged, r.budget]).toEqual([1, 1400n, 1400n]);
  });

  it("429 before any payment passes through, nothing signed", async () => {
    w.sandbox.emulator.addFault({ kind: "rate_limited", retryAfterSeconds: 3 });
    const r = await run("ratelimited");
    expect(r.res.status).toBe(429);
    expect(r.res.headers["retry-after"]).toBe("3");
    expect([r.signed, r.charged]).toEqual([0, 0n]);
  });

  it("a slow 402 beyond the upstream timeout is 504 JSON, nothing signed", async () => {
    w.sandbox.emulator.addFault({ kind: "slow", stage: "challenge", delayMs: 4000 });
    const r = await run("slow402");
    expect(r.res.status).toBe(504);
    expect(JSON.parse(r.res.body.toString())).toMatchObject({ code: "upstream_timeout" });
    expect(r.signed).toBe(0);
  });

  it("retrieve is quoted exactly: the wallet is named in X-Stoka-Owner", async () => {
    // Someone else stores a bigger blob under the same key: without the owner header the quote
    // would be theirs (2000) and the payment refused.
    const other = directClient(w.sandbox);
    await other.paid("POST", "/v1/store", {
      headers: { "x-stoka-key": "shared-key" },
      body: Buffer.alloc(10 * 1024),
    });
    expect((await store(w, "shared-key")).status).toBe(201);
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/retrieve/shared-key` });
    expect(res.status).toBe(200);
    expect(res.headers["x-stoka-proxy-paid"]).toBe("1100");
    expect(res.body.equals(BODY)).toBe(true);
  });
});

describe("bodies", () => {
  it("a 5 MiB store body arrives byte-identical on the paid retry", async () => {
    await withWorld(
      (c) => {
        const b = c.budgets[0];
        if (b) b.perRequestMax = parseAmount("1 USDC");
      },
      async (world) => {
        const big = Buffer.alloc(5 * 1024 * 1024);
        for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
        const res = await store(world, "five-mib", big);
        expect(res.status).toBe(201);
        expect(res.headers["x-stoka-proxy-paid"]).toBe(String(1000 + 5120 * 400));
        const stored = world.sandbox.emulator.state.getBlob(world.sandbox.wallet.publicKey(), "five-mib");
        const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
        expect(stored && sha(stored.data)).toBe(sha(big));
      },
    );
  });

  it("a body above the buffering cap is 413 and never reaches stoka", async () => {
    await withWorld(
      (c) => (c.maxBufferedBodyBytes = 1024 * 1024),
      async (world) => {
        const res = await store(world, "too-large", Buffer.alloc(2 * 1024 * 1024));
        expect(res.status).toBe(413);
        expect(JSON.parse(res.body.toString())).toMatchObject({ code: "body_too_large" });
        expect(world.signCalls()).toBe(0);
        expect(
          world.sandbox.emulator.state.getBlob(world.sandbox.wallet.publicKey(), "too-large"),
        ).toBeUndefined();
      },
    );
  });
});

describe("the external signer command (X_PAYMENT_CMD)", () => {
  const root = new URL("../..", import.meta.url).pathname;
  function commandSigner(world: ProxyWorld, extraEnv: string, timeoutMs = 20_000): CountingSigner {
    const dir = mkdtempSync(join(tmpdir(), "stoka-sign-"));
    const secretFile = join(dir, "secret");
    const caFile = join(dir, "ca.pem");
    writeFileSync(secretFile, world.sandbox.wallet.secret(), { mode: 0o600 });
    writeFileSync(caFile, world.sandbox.ca.certPem);
    const cmd = `${extraEnv} SIGN_SECRET_FILE=${secretFile} SIGN_RPC_CA_FILE=${caFile} SIGN_RPC_URL=${world.sandbox.rpc.url} node --import tsx ${root}test/support/sign-command.ts`;
    const signer = new CountingSigner(
      new CommandPaymentSigner(cmd, timeoutMs, world.sandbox.wallet.publicKey()),
    );
    world.proxy.ctx.signer = signer;
    return signer;
  }

  it("pays through the command", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        const signer = commandSigner(world, "");
        const res = await store(world, "by-command");
        expect(res.status).toBe(201);
        expect(res.headers["x-stoka-proxy-paid"]).toBe("1400");
        expect(signer.calls).toBe(1);
        expect(world.charged()).toBe(1400n);
      },
    );
  });

  it("a command that pays someone else is caught before anything is sent", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        commandSigner(world, "SIGN_FORGE_PAYTO=1");
        const res = await store(world, "forged-command");
        expect(res.status).toBe(502);
        expect(JSON.parse(res.body.toString())).toMatchObject({ code: "signer_mismatch" });
        expect(world.charged()).toBe(0n);
        expect(await budgetUsed(world)).toBe(0n);
      },
    );
  });

  it.each(["x402v1", "x402v2"] as const)("pays through the command in the %s form", async (form) => {
    await withWorld(
      () => undefined,
      async (world) => {
        world.sandbox.emulator.switches.challengeForm = form;
        commandSigner(world, "");
        const res = await store(world, `by-command-${form}`);
        expect(res.status, res.body.toString()).toBe(201);
        expect(world.charged()).toBe(1400n);
      },
    );
  });

  it.each([
    ["an `accepted` that is not the requirement offered", "SIGN_FORGE_ACCEPTED=1", /accepted/],
    ["another x402Version", "SIGN_FORGE_VERSION=1", /x402Version/],
  ])("a command whose header carries %s is caught before anything is sent", async (_name, env, reason) => {
    await withWorld(
      () => undefined,
      async (world) => {
        const before = world.sandbox.emulator.state.requests.get("store") ?? 0;
        commandSigner(world, env);
        const res = await store(world, "forged-accepted");
        expect(res.status).toBe(502);
        const body = JSON.parse(res.body.toString()) as { code: string; error: string };
        expect(body.code).toBe("signer_mismatch");
        expect(body.error).toMatch(reason);
        expect(world.charged()).toBe(0n);
        expect(await budgetUsed(world)).toBe(0n);
        // Only the unpaid first request reached stoka: the forged payment was never sent.
        expect((world.sandbox.emulator.state.requests.get("store") ?? 0) - before).toBe(1);
      },
    );
  });

  it("a hanging command times out: 502, nothing paid, budget released", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        const hanging = new CountingSigner(
          new CommandPaymentSigner("sleep 30", 500, world.sandbox.wallet.publicKey()),
        );
        world.proxy.ctx.signer = hanging;
        const started = Date.now();
        const res = await store(world, "hang");
        expect(Date.now() - started).toBeLessThan(5000);
        expect(res.status).toBe(502);
        expect(JSON.parse(res.body.toString())).toMatchObject({ code: "payment_timeout" });
        expect(world.charged()).toBe(0n);
        expect(await budgetUsed(world)).toBe(0n);
      },
    );
  });
});

describe("hygiene", () => {
  it("headers: hop-by-hop stripped toward the origin, Via added, nothing injected for non-paid hosts", async () => {
    origin.received.length = 0;
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${origin.url}/echo`,
      headers: {
        Connection: "keep-alive, X-Drop-Me",
        "X-Drop-Me": "1",
        "Proxy-Authorization": "Basic c2VjcmV0",
        TE: "trailers",
        "X-Keep": "yes",
      },
      body: Buffer.from("plain"),
    });
    expect(res.status).toBe(200);
    const got = origin.received[0]?.headers ?? {};
    expect(got["x-keep"]).toBe("yes");
    for (const h of ["x-drop-me", "proxy-authorization", "te", "x-payment", "x-stoka-owner", "authorization"])
      expect(got[h]).toBeUndefined();
    expect(got.via).toMatch(/^1\.1 stoka-proxy-[0-9a-f]{8}$/);
  });

  it("a request that already carries our Via is a loop: 508", async () => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: `${origin.url}/x`,
      headers: { Via: w.proxy.ctx.via },
    });
    expect(res.status).toBe(508);
    expect(JSON.parse(res.body.toString())).toMatchObject({ code: "loop_detected" });
  });

  it("a request aimed at the proxy itself is a loop: 508", async () => {
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${w.proxyUrl}/v1/store` });
    expect(res.status).toBe(508);
  });

  it("an unreachable paid upstream is 502 JSON naming the cause", async () => {
    await withWorld(
      (c) => c.paidHosts.forEach((h) => (h.upstream = new URL("http://127.0.0.1:9"))),
      async (world) => {
        const res = await store(world, "unreachable");
        expect(res.status).toBe(502);
        expect(JSON.parse(res.body.toString())).toMatchObject({
          code: "upstream_unreachable",
          error: expect.stringMatching(/ECONNREFUSED/),
        });
      },
    );
  });

  it("an unreachable non-paid host is 502 JSON too", async () => {
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: "http://localhost:9/x" });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString())).toMatchObject({ code: "upstream_unreachable" });
  });

  it("logs: one line per request, no seed, no payment header value", async () => {
    await store(w, "log-check");
    const logs = w.logs();
    expect(logs).toMatch(/"route":"store"[^\n]*"paid_atomic":"1400"[^\n]*"tx":"[0-9a-f]{64}"/);
    expect(logs).not.toContain(w.sandbox.wallet.secret());
    const produced = w.signer()?.produced ?? [];
    expect(produced.length).toBeGreaterThan(0);
    for (const header of produced) {
      expect(logs).not.toContain(header);
      expect(logs).not.toContain(header.slice(20, 80));
    }
  });
});
