import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { openTunnel, rawExchange, readUntilClosed } from "../support/sockets.js";
import type { RawAnswer } from "../support/sockets.js";

/**
 * Requests Node's strict parser refuses get the JSON error (400 malformed_request, 431
 * headers_too_large) with X-Stoka-Proxy-Error, one log line without header values, and a
 * closed connection, on the listener and inside tunnels to paid hosts; none is forwarded.
 */
const PAID = "test.api.stoka.space";
const SECRET = "Bearer sekrit-token-never-logged";

let w: ProxyWorld;
let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin();
  w = await startProxyWorld();
});
afterAll(async () => {
  await w.close();
  await origin.close();
});

const port = () => Number(new URL(w.proxyUrl).port);
const emulatorRequests = () => [...w.sandbox.emulator.state.requests.values()].reduce((a, b) => a + b, 0);

/** Request heads that break HTTP/1.1 framing; `target` is the request-target, `host` the Host. */
function shapes(target: string, host: string): [string, string, number, string][] {
  const auth = `Authorization: ${SECRET}\r\n`;
  return [
    [
      "Content-Length and Transfer-Encoding",
      `POST ${target} HTTP/1.1\r\nHost: ${host}\r\n${auth}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      400,
      "malformed_request",
    ],
    [
      "two Content-Lengths",
      `POST ${target} HTTP/1.1\r\nHost: ${host}\r\n${auth}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
      400,
      "malformed_request",
    ],
    [
      "obs-fold",
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${auth}X-A: b\r\n  folded\r\n\r\n`,
      400,
      "malformed_request",
    ],
    [
      "a bare CR",
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${auth}X-A: b\rX-B: c\r\n\r\n`,
      400,
      "malformed_request",
    ],
    ["a bare LF", `GET ${target} HTTP/1.1\r\nHost: ${host}\n${auth}X-A: b\r\n\r\n`, 400, "malformed_request"],
    [
      "a NUL in a header",
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${auth}X-A: b\0c\r\n\r\n`,
      400,
      "malformed_request",
    ],
    [
      "a header section over 16 KiB",
      `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${auth}X-Big: ${"a".repeat(20_000)}\r\n\r\n`,
      431,
      "headers_too_large",
    ],
  ];
}

function expectRefused(a: RawAnswer, status: number, code: string): void {
  expect(a.status).toBe(status);
  expect(a.headers["x-stoka-proxy-error"]).toBe(code);
  expect(a.headers["content-type"]).toBe("application/json");
  expect(JSON.parse(a.body)).toMatchObject({ code });
  expect(a.closed).toBe(true);
}

describe("on the listener", () => {
  for (const [name, bytes, status, code] of shapes("http://localhost:ORIGIN/smuggle", "localhost:ORIGIN")) {
    it(`${name}: ${status} ${code}, nothing forwarded, one log line without header values`, async () => {
      const before = origin.received.length;
      const logsBefore = w.logs().length;
      const text = bytes.replaceAll("ORIGIN", String(origin.port));
      expectRefused(await rawExchange(port(), text), status, code);
      expect(origin.received.length).toBe(before);
      const lines = w.logs().slice(logsBefore).trim().split("\n").filter(Boolean);
      const refusals = lines.filter((l) => l.includes("HTTP parser rejected"));
      expect(refusals).toHaveLength(1);
      expect(JSON.parse(refusals[0] ?? "{}")).toMatchObject({ error_code: code, listener: "proxy" });
      expect(w.logs()).not.toContain("sekrit");
    });
  }

  it("gateway mode (origin-form to the paid upstream): refused before anything is paid", async () => {
    const before = emulatorRequests();
    const charged = w.charged();
    for (const [, bytes, status, code] of shapes("/v1/store", "localhost")) {
      expectRefused(await rawExchange(port(), bytes), status, code);
    }
    const badChunk = await rawExchange(
      port(),
      "POST /v1/store HTTP/1.1\r\nHost: localhost\r\nX-Stoka-Key: bad-chunk\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n",
    );
    expectRefused(badChunk, 400, "malformed_request");
    expect(emulatorRequests()).toBe(before);
    expect(w.charged()).toBe(charged);
    expect(w.signCalls()).toBe(0);
  });

  it("a malformed chunked body: the origin never receives a complete request", async () => {
    const before = origin.received.length;
    const a = await rawExchange(
      port(),
      `POST http://localhost:${origin.port}/bad-chunk HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`,
    );
    expect(a.status).toBe(400);
    expect(a.headers["x-stoka-proxy-error"]).toBe("malformed_request");
    await new Promise((r) => setTimeout(r, 200));
    expect(origin.received.slice(before).filter((r) => r.url === "/bad-chunk")).toEqual([]);
  });

  it("after a good keep-alive request, a malformed one on the same connection is still answered", async () => {
    const a = await rawExchange(
      port(),
      `GET http://localhost:${origin.port}/first HTTP/1.1\r\nHost: localhost\r\n\r\n` +
        `GET http://localhost:${origin.port}/second HTTP/1.1\r\nHost: localhost\r\nX-A: b\0\r\n\r\n`,
    );
    expect(a.text).toMatch(/^HTTP\/1\.1 200/);
    expect(a.text).toMatch(/HTTP\/1\.1 400 Bad Request[\s\S]*x-stoka-proxy-error: malformed_request/i);
    expect(a.closed).toBe(true);
  });
});

describe("inside a CONNECT tunnel to a paid host", () => {
  it("plain HTTP: each shape refused, nothing reaches the paid upstream", async () => {
    const before = emulatorRequests();
    for (const [, bytes, status, code] of shapes("/v1/store", PAID)) {
      const s = await openTunnel(port(), `${PAID}:80`);
      const answer = readUntilClosed(s);
      s.write(bytes, "latin1");
      expectRefused(await answer, status, code);
    }
    expect(emulatorRequests()).toBe(before);
    expect(w.signCalls()).toBe(0);
    expect(w.logs()).toContain('"listener":"tunnel"');
    expect(w.logs()).not.toContain("sekrit");
  });

  it("TLS-intercepted: each shape refused, nothing reaches the paid upstream", async () => {
    const before = emulatorRequests();
    for (const [, bytes, status, code] of shapes("/v1/store", PAID)) {
      const raw = await openTunnel(port(), `${PAID}:443`);
      const secure = tls.connect({ socket: raw, servername: PAID, ca: w.sandbox.ca.certPem });
      await new Promise<void>((resolve, reject) => {
        secure.once("secureConnect", () => resolve());
        secure.once("error", reject);
      });
      const answer = readUntilClosed(secure);
      secure.write(bytes, "latin1");
      expectRefused(await answer, status, code);
    }
    expect(emulatorRequests()).toBe(before);
    expect(w.signCalls()).toBe(0);
  });
});
