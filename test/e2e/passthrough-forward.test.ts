import { createHash } from "node:crypto";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { rawExchange } from "../support/sockets.js";

/**
 * The pass-through forwarder (src/proxy/passthrough.ts) for hosts that are not paid, driven
 * over real sockets: what the upstream received, what the app was told, and what the
 * upstream-error counter says. It replaced http-proxy-3's web pass; each case is a behaviour
 * that pass had and this one must keep.
 */
let w: ProxyWorld;
let upstream: http.Server;
let upstreamPort = 0;
let seen: { method: string; headers: http.IncomingHttpHeaders; bodyHash: string; bytes: number }[] = [];
let handler: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

const TIMEOUT_MS = 800;

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method ?? "",
        headers: req.headers,
        bodyHash: createHash("sha256").update(body).digest("hex"),
        bytes: body.length,
      });
      handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", () => resolve()));
  upstreamPort = (upstream.address() as AddressInfo).port;
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = TIMEOUT_MS;
  });
});

afterAll(async () => {
  await w?.close();
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

beforeEach(() => {
  seen = [];
  handler = (_req, res) => res.end("ok");
});

const proxyPort = () => Number(new URL(w.proxyUrl).port);
const target = (path: string) => `http://127.0.0.1:${upstreamPort}${path}`;
const errors = (kind: string) =>
  w.proxy.metrics?.upstreamErrors
    .get()
    .then((m) => m.values.find((v) => v.labels.kind === kind)?.value ?? 0) ?? Promise.resolve(0);

function viaProxy(
  method: string,
  path: string,
  body?: Buffer,
  headers: http.OutgoingHttpHeaders = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: proxyPort(), method, path: target(path), headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("pass-through to a host that is not paid", () => {
  it("streams a 1 MiB upload and a 1 MiB answer byte for byte", async () => {
    const big = Buffer.alloc(1 << 20, 7);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    handler = (_req, res, body) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(body);
    };
    const r = await viaProxy("PUT", "/blob", big);
    expect(r.status).toBe(200);
    expect(r.body.equals(big)).toBe(true);
    expect(seen[0]?.bytes).toBe(big.length);
    expect(seen[0]?.bodyHash).toBe(createHash("sha256").update(big).digest("hex"));
  });

  it("a bodiless DELETE reaches the upstream with Content-Length: 0", async () => {
    const r = await viaProxy("DELETE", "/thing");
    expect(r.status).toBe(200);
    expect(seen[0]?.method).toBe("DELETE");
    expect(seen[0]?.headers["content-length"]).toBe("0");
    expect(seen[0]?.headers["transfer-encoding"]).toBeUndefined();
  });

  it("hop-by-hop headers go neither way; Via is added both ways; the status and reason pass", async () => {
    handler = (_req, res) => {
      res.statusMessage = "Made It";
      res.writeHead(201, {
        "x-up": "1",
        "keep-alive": "timeout=99",
        "x-gone": "2",
        connection: "x-gone",
        "content-length": "4",
      });
      res.end("made");
    };
    const r = await rawExchange(
      proxyPort(),
      `POST ${target("/h")} HTTP/1.1\r\nHost: x\r\nConnection: close, x-secret\r\nX-Secret: s\r\nProxy-Authorization: Basic eDp5\r\nContent-Length: 2\r\n\r\nhi`,
    );
    expect(r.status).toBe(201);
    expect(r.text).toMatch(/^HTTP\/1\.1 201 Made It\r\n/);
    expect(r.body).toBe("made");
    expect(r.headers["x-up"]).toBe("1");
    expect(r.headers["keep-alive"]).toBeUndefined();
    expect(r.headers["x-gone"]).toBeUndefined();
    expect(r.headers.via).toMatch(/stoka-proxy/);
    // The app asked to close: the answer says so (not the upstream's keep-alive) and closes.
    expect(r.headers.connection).toBe("close");
    expect(r.closed).toBe(true);
    const h = seen[0]?.headers ?? {};
    expect(h["x-secret"]).toBeUndefined();
    expect(h["proxy-authorization"]).toBeUndefined();
    expect(h.via).toMatch(/stoka-proxy/);
    expect(h.host).toBe(`127.0.0.1:${upstreamPort}`);
  });

  it("an upstream that never answers: 504 upstream_timeout, counted as a timeout", async () => {
    handler = () => undefined; // holds the request
    const before = await errors("timeout");
    const started = Date.now();
    const r = await viaProxy("GET", "/stall");
    expect(r.status).toBe(504);
    expect(r.headers["x-stoka-proxy-error"]).toBe("upstream_timeout");
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(await errors("timeout")).toBe(before + 1);
  });

  it("a closed port: 502 upstream_unreachable, counted as a connect failure", async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer();
      s.listen(0, "127.0.0.1", () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const before = await errors("connect");
    const r = await new Promise<{ status: number; code: string | undefined }>((resolve, reject) => {
      http
        .get(
          { host: "127.0.0.1", port: proxyPort(), path: `http://127.0.0.1:${closed}/x`, agent: false },
          (res) => {
            res.resume();
            resolve({ status: res.statusCode ?? 0, code: res.headers["x-stoka-proxy-error"] as string });
          },
        )
        .on("error", reject);
    });
    expect(r).toEqual({ status: 502, code: "upstream_unreachable" });
    expect(await errors("connect")).toBe(before + 1);
  });

  it("an app that hangs up mid-answer: the upstream call is cut and no upstream error is counted", async () => {
    let upstreamRes: http.ServerResponse | undefined;
    const upstreamClosed = new Promise<void>((resolve) => {
      handler = (_req, res) => {
        upstreamRes = res;
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("first part ");
        res.once("close", () => resolve());
      };
    });
    const before = [await errors("connect"), await errors("timeout")];
    await new Promise<void>((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port: proxyPort(), path: target("/long"), agent: false },
        (res) => {
          res.once("data", () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on("error", () => undefined);
      setTimeout(() => reject(new Error("no first chunk")), 3000).unref();
    });
    await upstreamClosed;
    expect(upstreamRes?.writableFinished).toBe(false);
    // Past the upstream timeout: a dangling timer would count a timeout now.
    await new Promise((r) => setTimeout(r, TIMEOUT_MS + 200));
    expect([await errors("connect"), await errors("timeout")]).toEqual(before);
  });

  it("an invalid upstream status: 502 upstream_unreachable and the proxy keeps serving", async () => {
    const raw = net.createServer((s) => {
      s.on("error", () => undefined);
      s.once("data", () => s.end("HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", "latin1"));
    });
    await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", () => resolve()));
    const rawPort = (raw.address() as AddressInfo).port;
    try {
      const a = await rawExchange(
        proxyPort(),
        `GET http://127.0.0.1:${rawPort}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      expect(a.status).toBe(502);
      expect(a.headers["x-stoka-proxy-error"]).toBe("upstream_unreachable");
      expect((await viaProxy("GET", "/after")).status).toBe(200);
    } finally {
      await new Promise<void>((resolve) => raw.close(() => resolve()));
    }
  });

  it("64 keep-alive app connections reuse upstream connections (no more than the apps')", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    let opened = 0;
    const count = () => (opened += 1);
    upstream.on("connection", count);
    try {
      for (let round = 0; round < 5; round += 1) {
        await Promise.all(
          Array.from(
            { length: 64 },
            () =>
              new Promise<void>((resolve, reject) => {
                http
                  .get({ host: "127.0.0.1", port: proxyPort(), path: target("/pool"), agent }, (res) => {
                    res.resume();
                    res.on("end", () => resolve());
                  })
                  .on("error", reject);
              }),
          ),
        );
      }
    } finally {
      upstream.off("connection", count);
      agent.destroy();
    }
    expect(seen).toHaveLength(320);
    expect(opened).toBeLessThanOrEqual(64);
  });
});
