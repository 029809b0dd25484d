import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import zlib from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { startHostileUpstream } from "../support/hostile-upstream.js";
import type { HostileAnswer, HostileUpstream } from "../support/hostile-upstream.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { rawExchange } from "../support/raw-http.js";
import { parseAnswer, until } from "../support/sockets.js";

/**
 * The attack review's follow-ups on the paid path, each against a real proxy and real sockets:
 * a 402 the upstream compressed (read within the cap, or refused; a bomb never grows past it),
 * a 402 body that never ends (refused, the upstream connection closed), a client that leaves
 * before the proxy signs (nothing signed, the reservation released with the reason in the
 * ledger), and Upgrade requests (a WebSocket passes through to a host that is not paid, is
 * refused with 501 for a paid host, never paid for, never left hanging).
 */
const HOST = "hostile.test";
const BASE = `http://${HOST}`;

let w: ProxyWorld;
let hostile: HostileUpstream;
let ws: { port: number; upgrades: number; open: () => number; close: () => Promise<void> };

/** A WebSocket-shaped origin (not a paid host): answers 101, then echoes every byte. */
async function startUpgradeOrigin(): Promise<typeof ws> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.writeHead(426).end("upgrade required"));
  const origin = { port: 0, upgrades: 0, open: () => sockets.size, close: async () => undefined as void };
  server.on("upgrade", (_req: http.IncomingMessage, socket: net.Socket) => {
    origin.upgrades += 1;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  origin.port = (server.address() as AddressInfo).port;
  origin.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return origin;
}

beforeAll(async () => {
  hostile = await startHostileUpstream();
  ws = await startUpgradeOrigin();
  w = await startProxyWorld(
    (c, sandbox) => {
      c.paidHosts.push({ host: HOST, upstream: new URL(hostile.url), payTo: [sandbox.payTo] });
      c.egress.denyPrivate = false;
    },
    // Names that are not paid hosts resolve to the local origins.
    { resolve: async () => [{ address: "127.0.0.1", family: 4 as const }] },
  );
}, 30_000);
afterAll(async () => {
  await w?.close();
  await hostile?.close();
  await ws?.close();
});
beforeEach(() => {
  hostile.answers.clear();
  hostile.script = undefined;
  hostile.received.length = 0;
});

function payableJson(): string {
  return JSON.stringify({
    x402Version: 2,
    accepts: [
      {
        scheme: "exact",
        network: w.config.network,
        asset: w.config.asset,
        payTo: w.sandbox.payTo,
        amount: "1000",
        maxTimeoutSeconds: 120,
        extra: { areFeesSponsored: true },
      },
    ],
  });
}

/** 402 (as `first`) until a payment arrives, then 200 "paid". */
function payThen(first: HostileAnswer): void {
  hostile.script = (r) =>
    r.headers["x-payment"] !== undefined || r.headers["payment-signature"] !== undefined
      ? { status: 200, headers: { "content-type": "text/plain" }, body: "paid" }
      : first;
}

const encoders: [string, (b: Buffer) => Buffer][] = [
  ["gzip", (b) => zlib.gzipSync(b)],
  ["deflate", (b) => zlib.deflateSync(b)],
  ["br", (b) => zlib.brotliCompressSync(b)],
  ["x-gzip", (b) => zlib.gzipSync(b)],
];

describe("a 402 body the upstream compressed", () => {
  it.each(encoders)("Content-Encoding: %s is decoded and paid once", async (coding, encode) => {
    payThen({
      status: 402,
      headers: { "content-type": "application/json", "content-encoding": coding },
      body: encode(Buffer.from(payableJson())),
    });
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/gz-${coding}` });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe("paid");
    expect(w.signCalls()).toBe(signs + 1);
    expect(hostile.paidRequests()).toBe(1);
  });

  it("an empty body that says gzip (the terms in PAYMENT-REQUIRED) is read as empty, and paid", async () => {
    payThen({
      status: 402,
      headers: {
        "payment-required": Buffer.from(payableJson()).toString("base64"),
        "content-encoding": "gzip",
      },
    });
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/gz-empty` });
    expect(res.status).toBe(200);
    expect(w.signCalls()).toBe(signs + 1);
  });

  it("a refusal of a compressed 402 hands back its body decoded, as plain JSON", async () => {
    const body = JSON.parse(payableJson()) as { accepts: { payTo: string }[] };
    (body.accepts[0] as { payTo: string }).payTo = "GBADPAYEEXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
    hostile.answers.set("/v1/object/gz-refused", {
      status: 402,
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: zlib.gzipSync(Buffer.from(JSON.stringify(body))),
    });
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/gz-refused` });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("terms_rejected");
    expect(res.headers["content-encoding"]).toBeUndefined();
    const read = JSON.parse(res.body.toString()) as { accepts: unknown[]; proxy: { code: string } };
    expect(read.accepts).toHaveLength(1);
    expect(read.proxy.code).toBe("terms_rejected");
    expect(hostile.paidRequests()).toBe(0);
  });

  it.each([
    ["a gzip bomb (20 MB of spaces in 20 KB)", "gzip", () => zlib.gzipSync(Buffer.alloc(20_000_000, 0x20))],
    ["a brotli bomb", "br", () => zlib.brotliCompressSync(Buffer.alloc(20_000_000, 0x20))],
    ["a gzip body that is not gzip", "gzip", () => Buffer.from(payableJson())],
    ["a coding the proxy does not decode", "zstd", () => Buffer.from(payableJson())],
    ["two codings stacked", "gzip, gzip", () => zlib.gzipSync(zlib.gzipSync(Buffer.from(payableJson())))],
  ])("%s: 402 challenge_unreadable, nothing signed", async (_name, coding, body) => {
    payThen({
      status: 402,
      headers: { "content-type": "application/json", "content-encoding": coding },
      body: body(),
    });
    const signs = w.signCalls();
    const before = process.memoryUsage().rss;
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/bomb` });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("challenge_unreadable");
    const read = JSON.parse(res.body.toString()) as { proxy: { reason: string } };
    expect(read.proxy.reason).toMatch(/content-encoding|cap/i);
    expect(w.signCalls()).toBe(signs);
    expect(hostile.paidRequests()).toBe(0);
    // Decoding stops at the cap: the 20 MB never exist in memory (loose bound, shared process).
    expect(process.memoryUsage().rss - before).toBeLessThan(15_000_000);
  });

  it("a compressed 402 with a PAYMENT-REQUIRED header that is a bomb is refused too", async () => {
    const header = Buffer.from(payableJson()).toString("base64");
    payThen({
      status: 402,
      headers: { "payment-required": header, "content-encoding": "gzip" },
      body: zlib.gzipSync(Buffer.alloc(20_000_000, 0x20)),
    });
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/bomb-h` });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("challenge_unreadable");
    expect(w.signCalls()).toBe(signs);
  });
});

describe("a 402 body over the cap", () => {
  it("one that never ends is refused promptly and its upstream connection is closed", async () => {
    hostile.answers.set("/v1/object/endless", {
      status: 402,
      headers: { "content-type": "application/json" },
      endless: true,
    });
    const closedBefore = hostile.endlessClosed;
    const signs = w.signCalls();
    const started = Date.now();
    const res = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: `${BASE}/v1/object/endless`,
      extra: ["--max-time", "8"],
    });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("challenge_unreadable");
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await until(() => hostile.endlessClosed > closedBefore, 5_000)).toBe(true);
    expect(w.signCalls()).toBe(signs);
  });

  it("a PAYMENT-REQUIRED 402 with a body over the cap is refused, not paid", async () => {
    payThen({
      status: 402,
      headers: { "payment-required": Buffer.from(payableJson()).toString("base64") },
      body: "x".repeat(300_000),
    });
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/big-h` });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("challenge_unreadable");
    expect(w.signCalls()).toBe(signs);
  });
});

describe("a client that leaves before the proxy signs", () => {
  it("gets nothing signed or sent; the reservation is released and the ledger says why", async () => {
    payThen({
      status: 402,
      headers: { "content-type": "application/json" },
      body: payableJson(),
      delayMs: 700,
    });
    const signs = w.signCalls();
    const port = Number(new URL(w.proxyUrl).port);
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.on("error", () => undefined);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write(`GET ${BASE}/v1/object/gone HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    // Gone once the request is upstream, before its 402 arrives.
    expect(await until(() => hostile.received.length > 0, 5_000)).toBe(true);
    socket.destroy();
    const row = () => w.proxy.stores.ledger.latest().find((r) => r.url.endsWith("/v1/object/gone"));
    expect(await until(() => row()?.state === "failed", 5_000)).toBe(true);
    expect(row()?.reason).toMatch(/client_gone/);
    expect(w.signCalls()).toBe(signs);
    expect(hostile.paidRequests()).toBe(0);
    // Released: nothing is left reserved for it.
    expect(w.proxy.stores.ledger.inState("reserved", "sent").filter((r) => r.url.endsWith("/gone"))).toEqual(
      [],
    );
  });
});

describe("a client that leaves after the paid retry was sent", () => {
  it("the outcome is recorded as usual: settled, spent", async () => {
    hostile.script = (r) =>
      r.headers["x-payment"] !== undefined
        ? { status: 200, headers: { "content-type": "text/plain" }, body: "paid", delayMs: 700 }
        : { status: 402, headers: { "content-type": "application/json" }, body: payableJson() };
    const signs = w.signCalls();
    const port = Number(new URL(w.proxyUrl).port);
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.on("error", () => undefined);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write(`GET ${BASE}/v1/object/left-late HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    expect(await until(() => hostile.paidRequests() === 1, 5_000)).toBe(true);
    socket.destroy();
    const row = () => w.proxy.stores.ledger.latest().find((r) => r.url.endsWith("/v1/object/left-late"));
    expect(await until(() => row()?.state === "settled", 5_000)).toBe(true);
    expect(w.signCalls()).toBe(signs + 1);
  });
});

const upgradeHead = (target: string, host: string) =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

describe("Upgrade requests (WebSocket)", () => {
  it("to a host that is not paid, through forward mode: 101, then bytes both ways", async () => {
    const port = Number(new URL(w.proxyUrl).port);
    const authority = `ws.example:${ws.port}`;
    const text = await rawExchange(port, [upgradeHead(`http://${authority}/chat`, authority), "ping-1"], {
      quietMs: 600,
    });
    expect(text).toMatch(/^HTTP\/1\.1 101/);
    expect(text.endsWith("ping-1")).toBe(true);
    // The app closed: the upstream side of the pass-through is released too.
    expect(await until(() => ws.open() === 0, 5_000)).toBe(true);
  });

  it("another protocol (h2c) to a host that is not paid: 501, closed", async () => {
    const authority = `ws.example:${ws.port}`;
    const upgrades = ws.upgrades;
    const a = await rawUntilClosed(
      `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n`,
    );
    expect(a.status).toBe(501);
    expect(a.headers["x-stoka-proxy-error"]).toBe("upgrade_unsupported");
    expect(a.closed).toBe(true);
    expect(ws.upgrades).toBe(upgrades);
  });

  it("to a paid host in forward mode: 501, nothing sent upstream, nothing paid, closed", async () => {
    const signs = w.signCalls();
    const a = await rawUntilClosed(upgradeHead(`${BASE}/v1/queue/q/ws`, HOST));
    expect(a.status).toBe(501);
    expect(a.headers["x-stoka-proxy-error"]).toBe("upgrade_unsupported");
    expect(a.closed).toBe(true);
    expect(hostile.received).toEqual([]);
    expect(w.signCalls()).toBe(signs);
  });

  it("in gateway mode: 501, closed", async () => {
    const a = await rawUntilClosed(upgradeHead("/v1/queue/q/ws", "gateway.local"));
    expect(a.status).toBe(501);
    expect(a.headers["x-stoka-proxy-error"]).toBe("upgrade_unsupported");
    expect(a.closed).toBe(true);
  });

  it("inside a tunnel to a paid host: 501, closed", async () => {
    const port = Number(new URL(w.proxyUrl).port);
    const text = await rawExchange(
      port,
      [`CONNECT ${HOST}:80 HTTP/1.1\r\nHost: ${HOST}:80\r\n\r\n`, upgradeHead("/v1/queue/q/ws", HOST)],
      { quietMs: 1_500 },
    );
    expect(text).toMatch(/HTTP\/1\.1 200/);
    expect(text).toMatch(/HTTP\/1\.1 501/);
    expect(text.toLowerCase()).toContain("x-stoka-proxy-error: upgrade_unsupported");
    expect(hostile.received).toEqual([]);
  });

  it("to a host egress denies: 403, closed", async () => {
    const denied = w.config.egress.denyHosts;
    denied.push("denied.example");
    try {
      const a = await rawUntilClosed(upgradeHead("http://denied.example/chat", "denied.example"));
      expect(a.status).toBe(403);
      expect(a.headers["x-stoka-proxy-error"]).toBe("egress_denied");
      expect(a.closed).toBe(true);
    } finally {
      denied.pop();
    }
  });
});

/** Sends `bytes` on a fresh connection and reads until the proxy closes it (bounded). */
async function rawUntilClosed(bytes: string): Promise<ReturnType<typeof parseAnswer>> {
  const port = Number(new URL(w.proxyUrl).port);
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(parseAnswer(text, false));
    }, 5_000);
    socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
    socket.on("error", () => undefined);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(parseAnswer(text, true));
    });
    socket.write(bytes);
  });
}

describe("an attack pass on the paid path", () => {
  it("a head with more header lines than Node keeps: 431, not a request with headers silently dropped", async () => {
    // 2 500 short lines fit in 16 KiB; Node keeps the first 2 000, so a second Host after them
    // would slip past the one-Host check.
    const filler = Array.from({ length: 2_500 }, (_, i) => `a${i % 10}:\r\n`).join("");
    const head = `GET ${BASE}/v1/object/many HTTP/1.1\r\nHost: ${HOST}\r\n${filler}Host: other.example\r\n\r\n`;
    expect(head.length).toBeLessThan(16_000);
    const a = await rawUntilClosed(head);
    expect(a.status).toBe(431);
    expect(a.headers["x-stoka-proxy-error"]).toBe("headers_too_large");
    expect(hostile.received).toEqual([]);
  });

  it("a PAYMENT-REQUIRED whose resource names another host: refused, nothing signed", async () => {
    const challenge = JSON.parse(payableJson()) as Record<string, unknown>;
    challenge.resource = { url: "https://evil.example/v1/object/x", description: "not this host" };
    payThen({
      status: 402,
      headers: { "payment-required": Buffer.from(JSON.stringify(challenge)).toString("base64") },
    });
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/resource-elsewhere` });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("terms_rejected");
    expect(JSON.parse(res.body.toString())).toMatchObject({
      proxy: { reason: expect.stringMatching(/evil\.example/) },
    });
    expect(w.signCalls()).toBe(signs);
    expect(hostile.paidRequests()).toBe(0);
  });

  it("a PAYMENT-REQUIRED whose resource names this host is paid", async () => {
    const challenge = JSON.parse(payableJson()) as Record<string, unknown>;
    challenge.resource = { url: `https://${HOST.toUpperCase()}./v1/object/here` };
    payThen({
      status: 402,
      headers: { "payment-required": Buffer.from(JSON.stringify(challenge)).toString("base64") },
    });
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/here` });
    expect(res.status).toBe(200);
    expect(w.signCalls()).toBe(signs + 1);
  });

  it("a payee change between the 402 and the paid retry's answer: rejected, never paid twice", async () => {
    const first = payableJson();
    const second = first.replace(w.sandbox.payTo, "GBADPAYEEXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
    hostile.script = (r) => ({
      status: 402,
      headers: { "content-type": "application/json" },
      body: r.headers["x-payment"] ? second : first,
    });
    const signs = w.signCalls();
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/object/payee-switch` });
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("payment_rejected");
    expect(w.signCalls()).toBe(signs + 1);
    expect(hostile.paidRequests()).toBe(1);
  });
});
