import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { connect, rawExchange } from "../support/sockets.js";

/**
 * A hostile app and a hostile upstream against the pass-through forwarder
 * (src/proxy/passthrough.ts, `forward()`), over real sockets on 127.0.0.1. Each test is a
 * defect an attack review confirmed (each fails on the code before its fix); the comment says
 * whether the http-proxy-3 web pass this forwarder replaced had it too.
 */
let w: ProxyWorld;
const TIMEOUT_MS = 800;

beforeAll(async () => {
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = TIMEOUT_MS;
  });
});
afterAll(async () => {
  await w?.close();
});

const proxyPort = () => Number(new URL(w.proxyUrl).port);
const errors = (kind: string) =>
  w.proxy.metrics?.upstreamErrors
    .get()
    .then((m) => m.values.find((v) => v.labels.kind === kind)?.value ?? 0) ?? Promise.resolve(0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

/** A hand-written upstream: every byte it received, per connection; `onData` answers. */
async function rawUpstream(onData: (s: net.Socket, received: string) => void) {
  const conns: string[] = [];
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.once("close", () => sockets.delete(s));
    const idx = conns.push("") - 1;
    s.on("data", (c: Buffer) => {
      conns[idx] += c.toString("latin1");
      onData(s, conns[idx] as string);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  return { port: (srv.address() as AddressInfo).port, conns };
}

/** A real Node upstream: the request lines it parsed (what a real origin believes it was sent). */
async function nodeUpstream(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const parsed: string[] = [];
  const srv = http.createServer((req, res) => {
    parsed.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  closers.push(async () => {
    srv.closeAllConnections();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  return { port: (srv.address() as AddressInfo).port, parsed };
}

function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port: proxyPort(), path, agent: false }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

const chunked = (s: string) => `${s.length.toString(16)}\r\n${s}\r\n0\r\n\r\n`;

/** A plain GET through the proxy to the upstream on `port`, read until the proxy closes. */
const closingGet = (port: number, timeoutMs = 2000) =>
  rawExchange(
    proxyPort(),
    `GET http://127.0.0.1:${port}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    timeoutMs,
  );

describe("request framing on the way up (hostile app)", () => {
  // The http-proxy-3 pass had it too: http-proxy-3 piped the body into a GET the same way.
  it("a GET with a chunked body is not sent upstream unframed (no request smuggled into the pooled connection, no answer stolen from another app)", async () => {
    const up = await nodeUpstream((req, res) => {
      if (req.url === "/smuggled") setTimeout(() => res.end("POISON"), 300);
      else res.end(req.url === "/x" ? "first" : "innocent");
    });
    const smuggled = `GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`;
    const hostile = await rawExchange(
      proxyPort(),
      `GET http://127.0.0.1:${up.port}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled)}`,
      2000,
    );
    expect(hostile.status).toBe(200);
    // Another app, on its own connection, right after: the proxy's pooled upstream connection.
    const innocent = await get(`http://127.0.0.1:${up.port}/innocent`);
    await sleep(400);
    // The other app is not handed the answer to the request smuggled in by the hostile one.
    expect(innocent.body).toBe("innocent");
    expect(up.parsed).not.toContain("GET /smuggled");
  });

  // the http-proxy-3 pass had it too (http-proxy-3's deleteLength pass added the same Content-Length: 0).
  it("a DELETE with a chunked body is not sent as Content-Length: 0 followed by the body bytes", async () => {
    const up = await nodeUpstream((_req, res) => res.end("ok"));
    const smuggled = `GET /smuggled-delete HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`;
    const r = await rawExchange(
      proxyPort(),
      `DELETE http://127.0.0.1:${up.port}/thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled)}`,
      2000,
    );
    expect(r.status).toBe(200);
    await sleep(200);
    expect(up.parsed).toEqual(["DELETE /thing"]);
  });

  it("an OPTIONS with a chunked body is not sent as Content-Length: 0 followed by the body bytes", async () => {
    const up = await nodeUpstream((_req, res) => res.end("ok"));
    const smuggled = `GET /smuggled-options HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`;
    await rawExchange(
      proxyPort(),
      `OPTIONS http://127.0.0.1:${up.port}/o HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${chunked(smuggled)}`,
      2000,
    );
    await sleep(200);
    expect(up.parsed).toEqual(["OPTIONS /o"]);
  });

  // The http-proxy-3 pass had it too.
  it("'Connection: content-length' does not strip the framing of a GET body that is still forwarded", async () => {
    const up = await nodeUpstream((_req, res) => res.end("ok"));
    const smuggled = `GET /smuggled-cl HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`;
    const r = await rawExchange(
      proxyPort(),
      `GET http://127.0.0.1:${up.port}/x HTTP/1.1\r\nHost: x\r\nConnection: close, content-length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
      2000,
    );
    expect(r.status).toBe(200);
    await sleep(200);
    expect(up.parsed).toEqual(["GET /x"]);
  });
});

describe("answers from a hostile upstream", () => {
  // The http-proxy-3 pass had it too: Node emits only 'close' (no 'response', no 'error') on the upstream request.
  it("a 101 to a plain GET: the app is answered (502), not left hanging with the request in flight", async () => {
    const up = await rawUpstream((s, got) => {
      if (got.includes("\r\n\r\n"))
        s.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    });
    const r = await closingGet(up.port, TIMEOUT_MS * 3);
    expect(r.closed).toBe(true);
    expect(r.status).toBe(502);
  });

  // the http-proxy-3 pass had it too (its proxyRes hook and writeHeaders pass set the same headers first).
  it("an upstream error after its head was read: the 502 does not carry the upstream's reason phrase, Set-Cookie or Cache-Control", async () => {
    const up = await rawUpstream((s, got) => {
      if (got.includes("\r\n\r\n"))
        s.write(
          "HTTP/1.1 200 Fine\r\nSet-Cookie: sid=from-upstream\r\nCache-Control: public, max-age=86400\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        );
    });
    const r = await closingGet(up.port);
    expect(r.status).toBe(502);
    expect(r.text).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n/);
    expect(r.headers["set-cookie"]).toBeUndefined();
    expect(r.headers["cache-control"]).toBeUndefined();
  });

  // The http-proxy-3 pass had it too.
  it("a complete 204 followed by stray bytes reaches the app as the 204 (not as '502 No Content' with a JSON body)", async () => {
    const up = await rawUpstream((s, got) => {
      if (got.includes("\r\n\r\n")) s.end("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello");
    });
    const r = await closingGet(up.port);
    expect(r.text).not.toMatch(/^HTTP\/1\.1 502 No Content/);
    expect(r.status).toBe(204);
  });

  // The http-proxy-3 pass had it too: 1xx answers other than 100 were dropped.
  it("a 103 Early Hints is forwarded to the app before the final answer (RFC 9110 §15.2: a proxy MUST forward 1xx)", async () => {
    const up = await rawUpstream((s, got) => {
      if (got.includes("\r\n\r\n"))
        s.end(
          "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        );
    });
    const r = await closingGet(up.port);
    expect(r.text).toMatch(/^HTTP\/1\.1 103 /);
    expect(r.text).toMatch(/[Ll]ink: <\/a\.css>; rel=preload/);
    expect(r.text).toMatch(/HTTP\/1\.1 200 OK/);
  });

  // The http-proxy-3 pass had it too.
  it("an upstream that sends its head and then stalls past the timeout: nothing was sent yet, so the app gets 504 and a timeout is counted", async () => {
    const up = await rawUpstream((s, got) => {
      if (got.includes("\r\n\r\n")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    });
    const before = await errors("timeout");
    const r = await closingGet(up.port, TIMEOUT_MS * 3);
    expect(r.text.length).toBeGreaterThan(0); // the app was told something, not just hung up on
    expect(r.status).toBe(504);
    expect(await errors("timeout")).toBe(before + 1);
  });
});

describe("keep-alive towards the app", () => {
  // The http-proxy-3 pass had it too.
  it("an upstream that answers 413 and closes before the upload is done: the app's kept-alive connection still serves its next request", async () => {
    const up = await rawUpstream((s, got) => {
      if (!got.includes("\r\n\r\n") || (s as net.Socket & { done?: boolean }).done) return;
      (s as net.Socket & { done?: boolean }).done = true;
      if (got.startsWith("POST"))
        s.end("HTTP/1.1 413 Too Big\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig");
      else s.end("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond");
    });
    const s = await connect(proxyPort());
    let text = "";
    s.on("data", (c: Buffer) => (text += c.toString("latin1")));
    s.on("error", () => undefined);
    const size = 4 << 20;
    s.write(`POST http://127.0.0.1:${up.port}/upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 97);
    for (let sent = 0; sent < size; sent += chunk.length) s.write(chunk);
    s.write(`GET http://127.0.0.1:${up.port}/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    await sleep(3000);
    s.destroy();
    expect(text).toMatch(/^HTTP\/1\.1 413 /);
    // Either the 413 said close (and the connection closed), or the next request was answered.
    const saidKeepAlive = /\r\nconnection: keep-alive\r\n/i.test(text);
    if (saidKeepAlive) expect(text).toMatch(/HTTP\/1\.1 200 OK[\s\S]*second$/);
  });

  // New in this change: the http-proxy-3 pass answered an HTTP/1.0 app `Connection: close` here.
  it("an HTTP/1.0 keep-alive app and an answer of unknown length: not told keep-alive on a connection the proxy then closes", async () => {
    const up = await rawUpstream((s, got) => {
      if (got.includes("\r\n\r\n"))
        s.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    });
    const r = await rawExchange(
      proxyPort(),
      `GET http://127.0.0.1:${up.port}/x HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`,
      2000,
    );
    expect(r.status).toBe(200);
    expect(r.body).toBe("ok");
    expect(r.headers["content-length"]).toBeUndefined();
    expect(r.closed).toBe(true);
    expect(r.headers.connection).toBe("close");
  });
});
