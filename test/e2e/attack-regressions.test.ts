import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import https from "node:https";
import { Address, Keypair, nativeToScVal, xdr } from "@stellar/stellar-sdk";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { issueLeafCertificate } from "../../src/tls/certificates.js";
import type { MessageSigner } from "../../src/wallet/message-signer.js";
import { CommandPaymentSigner } from "../../src/wallet/command-payment-signer.js";
import { startHostileUpstream } from "../support/hostile-upstream.js";
import type { HostileAnswer, HostileUpstream } from "../support/hostile-upstream.js";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import { CountingSigner, startProxyWorld, withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { openTunnel, rawExchange, readUntilClosed } from "../support/sockets.js";
import type { RawAnswer } from "../support/sockets.js";

/**
 * Defects found by attacking the running proxy as a hostile upstream and a hostile app, one
 * regression each. Each case drives the proxy over real sockets and asserts on what the peers
 * received and what the app was told.
 */
const HOST = "hostile.test";
const STOKA = "http://test.api.stoka.space";

/** A server that answers every request with the same raw bytes, then closes. */
async function startRawUpstream(): Promise<{ port: number; answer: string; close(): Promise<void> }> {
  const state = { port: 0, answer: "", close: () => Promise.resolve() };
  const server = net.createServer((s) => {
    s.on("error", () => undefined);
    s.once("data", () => s.end(state.answer, "latin1"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  state.port = (server.address() as AddressInfo).port;
  state.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return state;
}

class CountingMessageSigner implements MessageSigner {
  calls = 0;
  constructor(private readonly inner: MessageSigner) {}
  get address() {
    return this.inner.address;
  }
  signMessage(message: string): Promise<string> {
    this.calls += 1;
    return this.inner.signMessage(message);
  }
}

let w: ProxyWorld;
let hostile: HostileUpstream;
let origin: Origin;
let raw: Awaited<ReturnType<typeof startRawUpstream>>;
let messages: CountingMessageSigner;
beforeAll(async () => {
  hostile = await startHostileUpstream();
  origin = await startOrigin();
  raw = await startRawUpstream();
  w = await startProxyWorld((c, sandbox) => {
    c.paidHosts.push({ host: HOST, upstream: new URL(hostile.url), payTo: [sandbox.payTo] });
    c.paidHosts.push({ host: "raw.test", upstream: new URL(`http://127.0.0.1:${raw.port}`), payTo: [] });
    c.upstream.timeoutMs = 1500;
    // These attacks repeat one request and leave payments indeterminate on purpose; each one
    // is about the single exchange (idempotency and the breaker have their own tests).
    c.resilience.idempotency = null;
    c.resilience.breaker = null;
    c.resilience.retry.maxAttempts = 1;
  });
  const inner = w.proxy.ctx.messageSigner;
  if (!inner) throw new Error("the world has no message signer");
  messages = new CountingMessageSigner(inner);
  w.proxy.ctx.messageSigner = messages;
}, 30_000);
afterAll(async () => {
  await w.close();
  await hostile.close();
  await origin.close();
  await raw.close();
});
beforeEach(() => {
  hostile.answers.clear();
  hostile.script = undefined;
  hostile.received.length = 0;
});

const port = () => Number(new URL(w.proxyUrl).port);

/** A requirement the proxy pays (pinned network, asset and payee, price under the cap). */
const payable = (world = w) => ({
  scheme: "exact",
  network: world.config.network,
  asset: world.config.asset,
  payTo: world.sandbox.payTo,
  amount: "1000",
  maxTimeoutSeconds: 120,
  extra: { areFeesSponsored: true },
});
const challenge402 = (world = w): HostileAnswer => ({
  status: 402,
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ x402Version: 2, accepts: [payable(world)] }),
});

const request = (method: string, target: string, extra = "", body = "") =>
  `${method} ${target} HTTP/1.1\r\nHost: ${HOST}\r\n${extra}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;

function expectCode(a: RawAnswer, status: number, code: string): void {
  expect(a.status, a.text).toBe(status);
  expect(a.headers["x-stoka-proxy-error"], a.text).toBe(code);
}

describe("an upstream's status line never crashes the proxy", () => {
  it("a pass-through host answering status 000 (502) or a control byte in the reason (dropped): the process lives", async () => {
    const upstream = await startRawUpstream();
    const sandbox = await startSandbox();
    const { configPath, dataDir } = writeProxyConfig(sandbox);
    const proc = await startProxyProcess(sandbox, configPath, dataDir);
    try {
      const proxyPort = Number(new URL(proc.url).port);
      const through = (answer: string) => {
        upstream.answer = answer;
        return rawExchange(
          proxyPort,
          `GET http://127.0.0.1:${upstream.port}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        );
      };
      for (const status of ["000", "099"]) {
        const a = await through(`HTTP/1.1 ${status} Odd\r\nContent-Length: 0\r\n\r\n`);
        expect(proc.child.exitCode, proc.output()).toBeNull();
        expectCode(a, 502, "upstream_unreachable");
      }
      // A reason phrase is optional (RFC 9112 §4): one with control bytes is dropped.
      for (const reason of ["O\x01K", "O\x7fK", "\x1b[31mred"]) {
        const a = await through(`HTTP/1.1 200 ${reason}\r\nContent-Length: 2\r\n\r\nok`);
        expect(proc.child.exitCode, proc.output()).toBeNull();
        expect(a.status).toBe(200);
        expect(a.text.split("\r\n")[0]).toBe("HTTP/1.1 200 OK");
        expect(a.body).toBe("ok");
      }
      // Still serving: the admin probe and a request through it.
      const health = await fetch(`${proc.adminUrl}/healthz`);
      expect(health.status).toBe(200);
      upstream.answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      const ok = await rawExchange(
        proxyPort,
        `GET http://127.0.0.1:${upstream.port}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      expect(ok.status).toBe(200);
    } finally {
      await proc.stop();
      await sandbox.close();
      await upstream.close();
    }
  }, 60_000);

  it("a paid host answering status 000: 502 upstream_unreachable, not internal", async () => {
    raw.answer = "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n";
    const a = await rawExchange(port(), request("POST", "http://raw.test/v1/store", "", "x"));
    expectCode(a, 502, "upstream_unreachable");
  });

  it("a paid retry answered with status 000: the outcome is unknown (money stays counted)", async () => {
    hostile.script = (r) =>
      r.headers["x-payment"]
        ? { status: 0, raw: "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n" }
        : challenge402();
    const charged = hostile.paidRequests();
    const a = await rawExchange(port(), request("POST", `http://${HOST}/v1/store`, "", "x"));
    expectCode(a, 502, "payment_indeterminate");
    expect(hostile.paidRequests() - charged).toBe(1);
  });
});

describe("a pass-through body cut short upstream is cut short for the app", () => {
  it("Content-Length 10, 3 bytes, then the upstream closes: the app's connection closes too", async () => {
    raw.answer = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    const started = Date.now();
    // Keep-alive on purpose: only a close tells the app the body is incomplete.
    const a = await rawExchange(
      port(),
      `GET http://127.0.0.1:${raw.port}/x HTTP/1.1\r\nHost: x\r\n\r\n`,
      8000,
    );
    expect(a.status).toBe(200);
    expect(a.body).toBe("abc");
    expect(a.closed).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
  }, 15_000);
});

describe("an upstream cannot speak for the proxy (X-Stoka-Proxy-* headers)", () => {
  const forged = {
    "x-stoka-proxy-paid": "1400",
    "x-stoka-proxy-tx": "ab".repeat(32),
    "x-stoka-proxy-payment-id": "forged",
    "x-stoka-proxy-error": "budget_exceeded",
  };
  const ours = (a: RawAnswer) => Object.keys(a.headers).filter((k) => k.startsWith("x-stoka-proxy-"));

  it("a paid host's unpaid answer claiming a payment reaches the app without the claim", async () => {
    hostile.answers.set("/v1/retrieve/k", { status: 200, headers: forged, body: "data" });
    const a = await rawExchange(port(), request("GET", `http://${HOST}/v1/retrieve/k`));
    expect(a.status).toBe(200);
    expect(ours(a)).toEqual([]);
  });

  it("a paid host's 402 the proxy refuses carries only the proxy's own code", async () => {
    hostile.answers.set("/v1/store", {
      status: 402,
      headers: { ...forged, "content-type": "application/json" },
      body: "{}",
    });
    const a = await rawExchange(port(), request("POST", `http://${HOST}/v1/store`, "", "x"));
    expect(ours(a)).toEqual(["x-stoka-proxy-error"]);
    expectCode(a, 402, "challenge_unreadable");
  });

  it("a paid answer keeps the proxy's true figures, not the upstream's", async () => {
    hostile.script = (r) =>
      r.headers["x-payment"]
        ? { status: 200, headers: { "x-stoka-proxy-paid": "1" }, body: "ok" }
        : challenge402();
    const a = await rawExchange(port(), request("POST", `http://${HOST}/v1/store`, "", "x"));
    expect(a.status).toBe(200);
    expect(a.headers["x-stoka-proxy-paid"]).toBe("1000");
  });

  it("a pass-through host's answer reaches the app without them", async () => {
    const echo = await startRawUpstream();
    try {
      const head = Object.entries(forged)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join("");
      echo.answer = `HTTP/1.1 200 OK\r\n${head}Content-Length: 2\r\n\r\nok`;
      const a = await rawExchange(
        port(),
        `GET http://127.0.0.1:${echo.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      expect(a.status).toBe(200);
      expect(ours(a)).toEqual([]);
    } finally {
      await echo.close();
    }
  });
});

describe("a wallet-auth challenge is never a signing oracle for the wallet key", () => {
  // Every signature the Stellar network checks is Ed25519 over a 32-byte hash (transactions,
  // Soroban authorization entries, SEP-53 messages): a 32-byte "message" could be one of them.
  it.each([
    ["32 ASCII bytes", "A".repeat(32)],
    ["32 UTF-8 bytes in fewer characters", "é".repeat(16)],
  ])("a message of %s is not signed and nothing is forwarded", async (_name, message) => {
    hostile.answers.set("/v1/auth/challenge", {
      status: 200,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ challenge_id: "c1", message }),
    });
    hostile.answers.set("/v1/object/k", { status: 204 });
    const signed = messages.calls;
    const a = await rawExchange(port(), request("DELETE", `http://${HOST}/v1/object/k`));
    expectCode(a, 502, "wallet_auth_failed");
    expect(messages.calls).toBe(signed);
    expect(hostile.received.filter((r) => r.url === "/v1/object/k")).toEqual([]);
  });

  it("a real stoka challenge is still signed", async () => {
    const a = await rawExchange(
      port(),
      `DELETE ${STOKA}/v1/object/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    expect(a.status).toBe(204);
  });
});

describe("a signer's payment must authorize exactly the agreed transfer", () => {
  const root = new URL("../..", import.meta.url).pathname;
  it("a command whose auth entry authorizes another transfer is caught before anything is sent", async () => {
    await withProxyWorld(
      () => undefined,
      async (world) => {
        const dir = mkdtempSync(join(tmpdir(), "stoka-sign-"));
        const secretFile = join(dir, "secret");
        const caFile = join(dir, "ca.pem");
        writeFileSync(secretFile, world.sandbox.wallet.secret(), { mode: 0o600 });
        writeFileSync(caFile, world.sandbox.ca.certPem);
        const cmd = `SIGN_FORGE_AUTH=1 SIGN_SECRET_FILE=${secretFile} SIGN_RPC_CA_FILE=${caFile} SIGN_RPC_URL=${world.sandbox.rpc.url} node --import tsx ${root}test/support/sign-command.ts`;
        world.proxy.ctx.signer = new CountingSigner(
          new CommandPaymentSigner(cmd, 20_000, world.sandbox.wallet.publicKey()),
        );
        const stores = () => world.sandbox.emulator.state.requests.get("store") ?? 0;
        const before = stores();
        const a = await rawExchange(
          Number(new URL(world.proxyUrl).port),
          `POST ${STOKA}/v1/store HTTP/1.1\r\nHost: x\r\nX-Stoka-Key: forged-auth\r\nContent-Length: 42\r\nConnection: close\r\n\r\n${"a".repeat(42)}`,
          30_000,
        );
        expectCode(a, 502, "signer_mismatch");
        expect(a.body).toMatch(/authoriz/);
        // Only the unpaid first request reached stoka: the signed authorization never left.
        expect(stores() - before).toBe(1);
        expect(world.charged()).toBe(0n);
      },
    );
  }, 60_000);
});

describe("a cut or stalled body from a paid host is an upstream failure, never internal", () => {
  it.each([
    ["reset in the middle of the 402 body", 502, "upstream_unreachable", { resetAfterBytes: 20 }],
    ["stalled in the middle of the 402 body", 504, "upstream_timeout", { stallAfterBytes: 20 }],
  ] as const)("%s: %i %s, nothing signed", async (_name, status, code, cut) => {
    hostile.answers.set("/v1/store", { ...challenge402(), ...cut });
    const signs = w.signCalls();
    const a = await rawExchange(port(), request("POST", `http://${HOST}/v1/store`, "", "x"));
    expectCode(a, status, code);
    expect(w.signCalls()).toBe(signs);
    expect(hostile.paidRequests()).toBe(0);
  });

  it("a wallet-auth challenge body reset: 502 wallet_auth_failed, nothing forwarded", async () => {
    hostile.answers.set("/v1/auth/challenge", {
      status: 200,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ challenge_id: "c1", message: "m".repeat(100) }),
      resetAfterBytes: 10,
    });
    const a = await rawExchange(port(), request("DELETE", `http://${HOST}/v1/object/k`));
    expectCode(a, 502, "wallet_auth_failed");
    expect(hostile.received.filter((r) => r.url === "/v1/object/k")).toEqual([]);
  });

  it("a second 402 cut after the payment was sent: indeterminate, the money stays counted", async () => {
    hostile.script = (r) =>
      r.headers["x-payment"] ? { ...challenge402(), resetAfterBytes: 20 } : challenge402();
    const a = await rawExchange(port(), request("POST", `http://${HOST}/v1/store`, "", "x"));
    expectCode(a, 502, "payment_indeterminate");
    const id = (JSON.parse(a.body) as { payment_id: string }).payment_id;
    const rows = [...w.proxy.stores.ledger.rows()].filter((r) => r.paymentId === id);
    expect(rows.at(-1)?.state).toBe("indeterminate");
  });
});

describe("a refusal's body is the proxy's JSON, whatever coding the upstream used", () => {
  // gzip, deflate and br are decoded within the cap (trust-followups.test.ts); this one is not.
  it("a 402 in a coding the proxy cannot read: 402 challenge_unreadable as plain JSON", async () => {
    hostile.answers.set("/v1/store", {
      status: 402,
      headers: { "content-type": "application/json", "content-encoding": "compress" },
      body: gzipSync(JSON.stringify({ x402Version: 2, accepts: [payable()] })),
    });
    const a = await rawExchange(port(), request("POST", `http://${HOST}/v1/store`, "", "x"));
    expectCode(a, 402, "challenge_unreadable");
    expect(a.headers["content-encoding"]).toBeUndefined();
    expect(JSON.parse(a.body)).toMatchObject({ proxy: { code: "challenge_unreadable" } });
  });
});

describe("budgets read the path the upstream runs (percent-encoded unreserved characters)", () => {
  it("POST /v1/%73tore is the store route: its per-request cap applies, nothing is paid", async () => {
    const decoding = await startHostileUpstream();
    let world: ProxyWorld | undefined;
    // A server that decodes %XX before routing, as RFC 3986 §6.2.2.2 allows for unreserved ones.
    decoding.script = (r) => {
      const path = decodeURIComponent(r.url.split("?")[0] ?? "");
      if (path !== "/v1/store") return { status: 404 };
      return r.headers["x-payment"] ? { status: 201, body: "{}" } : challenge402(world);
    };
    try {
      await withProxyWorld(
        (c, sandbox) => {
          c.paidHosts.push({ host: HOST, upstream: new URL(decoding.url), payTo: [sandbox.payTo] });
          c.budgets = [
            {
              name: "all",
              match: {},
              limits: [{ period: { kind: "calendar", unit: "day" }, amount: 10_000_000n }],
            },
            { name: "store-cap", match: { routes: ["store"] }, perRequestMax: 1n, limits: [] },
          ];
        },
        async (started) => {
          world = started;
          const worldPort = Number(new URL(started.proxyUrl).port);
          for (const path of ["/v1/store", "/v1/%73tore", "/v1/%73%74%6F%72%65", "/%76%31/store"]) {
            const a = await rawExchange(worldPort, request("POST", `http://${HOST}${path}`, "", "x"));
            expectCode(a, 402, "price_above_cap");
          }
          expect(decoding.paidRequests()).toBe(0);
          expect(started.signCalls()).toBe(0);
          // The upstream was sent the one spelling the budgets judged.
          expect(decoding.received.map((r) => r.url)).toEqual(Array(4).fill("/v1/store"));
        },
      );
    } finally {
      await decoding.close();
    }
  });

  it.each(["/v1/retrieve/%zz", "/v1/retrieve/%4", "/v1/retrieve/a%"])(
    "a path with a broken escape (%s) is ambiguous: 400",
    async (path) => {
      const a = await rawExchange(port(), request("GET", `${STOKA}${path}`));
      expectCode(a, 400, "bad_request");
    },
  );
});

describe("requests Node would refuse with a bare status get the proxy's JSON and code", () => {
  it.each([
    ["HTTP/1.1 without Host", 400, "bad_request", "GET /.well-known/stoka.json HTTP/1.1\r\n\r\n"],
    [
      "absolute-form HTTP/1.1 without Host",
      400,
      "bad_request",
      `GET ${STOKA}/.well-known/stoka.json HTTP/1.1\r\nConnection: close\r\n\r\n`,
    ],
    [
      "two Host header fields",
      400,
      "bad_request",
      "GET /.well-known/stoka.json HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    ],
    [
      "an expectation other than 100-continue",
      417,
      "expectation_failed",
      "POST /v1/store HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
    ],
    [
      "a transfer coding other than chunked (gzip, chunked)",
      501,
      "transfer_coding_unsupported",
      "POST /v1/store HTTP/1.1\r\nHost: x\r\nX-Stoka-Key: te\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    ],
  ])("%s: %i %s", async (_name, status, code, bytes) => {
    const signs = w.signCalls();
    expectCode(await rawExchange(port(), bytes), status, code);
    expect(w.signCalls()).toBe(signs);
  });

  it("CONNECT inside a paid host's tunnel: 400 bad_request, never a nested tunnel", async () => {
    const s = await openTunnel(port(), "test.api.stoka.space:80");
    const answer = readUntilClosed(s);
    s.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
    expectCode(await answer, 400, "bad_request");
    expect(origin.received).toEqual([]);
  });
});

/**
 * A Soroban RPC that relays to the sandbox's and, in record-mode simulations, swaps the
 * authorization it hands back for a transfer of a thousand times the amount to `thief`. It
 * keeps every signed authorization it is later sent that pays the thief: one is enough to drain
 * the wallet, whatever happens to the payment itself.
 */
async function startTamperingRpc(sandbox: Sandbox) {
  const thief = Keypair.random().publicKey();
  const harvested: string[] = [];
  const leaf = await issueLeafCertificate(sandbox.ca, ["127.0.0.1"]);
  const relay = (body: string) =>
    new Promise<string>((resolve, reject) => {
      const out = https.request(
        sandbox.rpc.url,
        { method: "POST", ca: sandbox.ca.certPem, headers: { "content-type": "application/json" } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        },
      );
      out.on("error", reject);
      out.end(body);
    });
  const paysThief = (entry: xdr.SorobanAuthorizationEntry) => {
    const args = entry.rootInvocation().function().contractFn().args();
    return args[1] !== undefined && Address.fromScVal(args[1]).toString() === thief;
  };
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const msg = JSON.parse(text) as { method: string; params?: { transaction?: string } };
      let sentAuth: xdr.SorobanAuthorizationEntry[] = [];
      if (msg.params?.transaction) {
        const env = xdr.TransactionEnvelope.fromXDR(msg.params.transaction, "base64");
        sentAuth = env.v1().tx().operations()[0]?.body().invokeHostFunctionOp().auth() ?? [];
        for (const entry of sentAuth) {
          const signed = entry.credentials().address().signature().switch() !== xdr.ScValType.scvVoid();
          if (signed && paysThief(entry)) harvested.push(entry.toXDR("base64"));
        }
      }
      relay(text).then(
        (answer) => {
          const parsed = JSON.parse(answer) as { result?: { results?: { auth?: string[] }[] } };
          const auth = parsed.result?.results?.[0]?.auth;
          if (msg.method === "simulateTransaction" && sentAuth.length === 0 && auth?.[0]) {
            const entry = xdr.SorobanAuthorizationEntry.fromXDR(auth[0], "base64");
            const fn = entry.rootInvocation().function().contractFn();
            const [from, , amount] = fn.args() as [xdr.ScVal, xdr.ScVal, xdr.ScVal];
            const more = BigInt(amount.i128().lo().toString()) * 1000n;
            fn.args([from, new Address(thief).toScVal(), nativeToScVal(more, { type: "i128" })]);
            auth[0] = entry.toXDR("base64");
          }
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(parsed));
        },
        () => res.writeHead(502).end(),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    harvested,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe("the wallet signs only the agreed transfer, whatever the Soroban RPC hands it", () => {
  it("a simulation that asks for a transfer elsewhere gets no signature: 502, nothing paid", async () => {
    let rpc: Awaited<ReturnType<typeof startTamperingRpc>> | undefined;
    try {
      await withProxyWorld(
        async (c, sandbox) => {
          rpc = await startTamperingRpc(sandbox);
          c.wallet.rpcUrl = rpc.url;
        },
        async (world) => {
          const a = await rawExchange(
            Number(new URL(world.proxyUrl).port),
            `POST ${STOKA}/v1/store HTTP/1.1\r\nHost: x\r\nX-Stoka-Key: rpc-tamper\r\nContent-Length: 42\r\nConnection: close\r\n\r\n${"a".repeat(42)}`,
            20_000,
          );
          // The RPC never got the wallet's signature on the transfer it slipped in.
          expect(rpc?.harvested).toEqual([]);
          expectCode(a, 502, "payment_create_failed");
          expect(a.body).toMatch(/another call than the agreed transfer/);
          expect(world.charged()).toBe(0n);
        },
      );
    } finally {
      await rpc?.close();
    }
  }, 60_000);
});
