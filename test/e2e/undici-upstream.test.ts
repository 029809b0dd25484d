import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { rawExchange } from "../support/sockets.js";
import { startRawUpstream } from "../support/raw-upstream.js";
import type { RawUpstream } from "../support/raw-upstream.js";

/**
 * Bodiless pass-through requests and pooled paid-host sends go out on undici
 * (src/proxy/passthrough.ts forwardBodiless, src/http/upstream-client.ts sendUndici). undici is
 * stricter than Node's client in places an upstream meets every day: it fails a 304 (or 204)
 * that carries a Content-Length, and it frees a connection one event-loop turn after the
 * answer. These tests hold the proxy to what Node's client did, on real sockets.
 */
const PAID = "http://test.api.stoka.space";
let w: ProxyWorld;
let paidUpstream: (s: net.Socket, received: string) => void = () => undefined;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

let paidServer: RawUpstream;

beforeAll(async () => {
  paidServer = await startRawUpstream((s, req) => paidUpstream(s, req));
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = 1500;
    c.paidHosts = c.paidHosts.map((e) => ({
      ...e,
      upstream: new URL(`http://127.0.0.1:${paidServer.port}`),
    }));
  });
});
afterAll(async () => {
  await w?.close();
  await paidServer?.close();
});

const proxyPort = () => Number(new URL(w.proxyUrl).port);

const NOT_MODIFIED = 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n';

describe("an answer without a body that names a Content-Length (RFC 9110 §8.6: a 304 may)", () => {
  it("pass-through: a conditional GET's 304 with Content-Length reaches the app as the 304", async () => {
    const up = await startRawUpstream((s) => s.write(NOT_MODIFIED));
    closers.push(up.close);
    const r = await rawExchange(
      proxyPort(),
      `GET http://127.0.0.1:${up.port}/doc HTTP/1.1\r\nHost: x\r\nIf-None-Match: "v1"\r\nConnection: close\r\n\r\n`,
      3000,
    );
    expect(r.status).toBe(304);
    expect(r.text).toMatch(/etag: "v1"/i);
    expect(r.text).not.toMatch(/x-stoka-proxy-error/i);
  });

  it("paid host: a 304 with Content-Length reaches the app as the 304, and the next request is served", async () => {
    paidUpstream = (s, req) => {
      if (req.includes("/again")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain");
      else s.write(NOT_MODIFIED);
    };
    const first = await rawExchange(
      proxyPort(),
      `GET ${PAID}/v1/objects/abc HTTP/1.1\r\nHost: test.api.stoka.space\r\nIf-None-Match: "v1"\r\nConnection: close\r\n\r\n`,
      3000,
    );
    expect(first.status).toBe(304);
    expect(first.text).toMatch(/etag: "v1"/i);
    expect(first.text).not.toMatch(/x-stoka-proxy-error/i);
    const second = await rawExchange(
      proxyPort(),
      `GET ${PAID}/again HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n`,
      3000,
    );
    expect(second.status).toBe(200);
    expect(second.text.endsWith("again")).toBe(true);
  });

  it("paid host: a HEAD answered with a Content-Length and no body is relayed whole", async () => {
    paidUpstream = (s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nX-Kind: head\r\n\r\n");
    const r = await rawExchange(
      proxyPort(),
      `HEAD ${PAID}/v1/objects/abc HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n`,
      3000,
    );
    expect(r.status).toBe(200);
    expect(r.text).toMatch(/x-kind: head/i);
    expect(r.text).toMatch(/content-length: 99/i);
  });
});

describe("bodies streamed through undici", () => {
  const big = Buffer.alloc(6 << 20);
  for (let i = 0; i < big.length; i += 997) big[i] = i & 0xff;
  const digest = createHash("sha256").update(big).digest("hex");

  /** GET through the proxy, reading slowly at first (back-pressure all the way up). */
  const slowGet = (target: string) =>
    new Promise<{ status: number; hash: string; bytes: number }>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port: proxyPort(), path: target, agent: false },
        (res) => {
          const h = createHash("sha256");
          let bytes = 0;
          res.pause();
          setTimeout(() => res.resume(), 300);
          res.on("data", (c: Buffer) => {
            bytes += c.length;
            h.update(c);
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, hash: h.digest("hex"), bytes }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end();
    });

  it("pass-through: a 6 MiB answer to a slow app arrives byte for byte", async () => {
    const srv = http.createServer((_req, res) => {
      res.writeHead(200, { "content-length": String(big.length) });
      res.end(big);
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    closers.push(async () => {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    });
    const r = await slowGet(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/big`);
    expect(r.status).toBe(200);
    expect(r.bytes).toBe(big.length);
    expect(r.hash).toBe(digest);
  });

  it("paid host: a 6 MiB answer without a 402 to a slow app arrives byte for byte", async () => {
    paidUpstream = (s) => {
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n`);
      s.write(big);
    };
    const r = await slowGet(`${PAID}/v1/objects/big`);
    expect(r.status).toBe(200);
    expect(r.bytes).toBe(big.length);
    expect(r.hash).toBe(digest);
  });

  // The answer is written straight into the app's response (UndiciAnswer.sinkTo): bytes that
  // came with the head, before the sink, must lead; the rest must follow in order.
  it("paid host: the first bytes with the head and the rest later arrive in order, and the connection serves the next request", async () => {
    paidUpstream = (s, req) => {
      if (req.includes("/v1/objects/next"))
        return void s.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext");
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nfirst-");
      setTimeout(() => s.write("second-"), 50);
      setTimeout(() => s.write("end"), 100);
    };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(async () => agent.destroy());
    const get = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: "127.0.0.1", port: proxyPort(), path: `${PAID}${path}`, agent }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => (body += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
          })
          .on("error", reject);
      });
    expect(await get("/v1/objects/late")).toEqual({ status: 200, body: "first-second-end" });
    expect(await get("/v1/objects/next")).toEqual({ status: 200, body: "next" });
  });

  it("paid host: a chunked answer without a length arrives whole and ends", async () => {
    paidUpstream = (s) => {
      s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
      setTimeout(() => s.write("7\r\n, stoka\r\n0\r\n\r\n"), 50);
    };
    const r = await rawExchange(
      proxyPort(),
      `GET ${PAID}/v1/objects/chunked HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n`,
      3000,
    );
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    const body = r.text.slice(r.text.indexOf("\r\n\r\n") + 4);
    // Re-chunked by Node for the app: its chunks, read back, are the bytes; then the last chunk.
    let rest = body;
    let decoded = "";
    for (let n = 0; n < 10; n++) {
      const eol = rest.indexOf("\r\n");
      const size = parseInt(rest.slice(0, eol), 16);
      if (!(size > 0)) break;
      decoded += rest.slice(eol + 2, eol + 2 + size);
      rest = rest.slice(eol + 2 + size + 2);
    }
    expect(decoded).toBe("hello, stoka");
    expect(rest).toBe("0\r\n\r\n");
  });

  it("pass-through: an app that goes away mid-answer takes the upstream connection with it", async () => {
    const up = await startRawUpstream((s) => {
      s.write("HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n");
      s.write(Buffer.alloc(64 * 1024, 97));
    });
    closers.push(up.close);
    const app = net.connect(proxyPort(), "127.0.0.1");
    app.on("error", () => undefined);
    await new Promise<void>((r) => app.once("connect", () => r()));
    app.write(`GET http://127.0.0.1:${up.port}/endless HTTP/1.1\r\nHost: x\r\n\r\n`);
    await new Promise<void>((r) => app.once("data", () => r()));
    expect(up.open()).toBe(1);
    app.destroy();
    const until = Date.now() + 3000;
    while (up.open() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 25));
    expect(up.open()).toBe(0);
  });

  it("paid host: an answer cut short upstream is cut short for the app (never taken for the whole)", async () => {
    paidUpstream = (s) => s.end("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly-part");
    const r = await rawExchange(
      proxyPort(),
      `GET ${PAID}/v1/objects/cut HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n`,
      3000,
    );
    // The head went out with the first bytes; what follows is a closed connection, not 50 bytes.
    const body = r.text.slice(r.text.indexOf("\r\n\r\n") + 4);
    expect(body.length).toBeLessThan(50);
  });
});
