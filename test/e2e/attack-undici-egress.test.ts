import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import { withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { rawExchange } from "../support/sockets.js";

/**
 * Attack review of b5d9155 (undici upstream client), question 2: the egress policy on the
 * undici pass-through path (bodiless GET/HEAD, src/proxy/passthrough.ts forwardBodiless).
 * Names are pointed at loopback by an injected resolver; the proxy's pinned lookup
 * (src/proxy/pinned-lookup.ts) does the checking and connecting.
 */
const received: string[] = [];
let upstream: http.Server;
let upstream6: http.Server | undefined;
let port = 0;
let port6 = 0;

beforeAll(async () => {
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    received.push(`${req.method} ${req.url} ${req.headers.host}`);
    if (req.url?.startsWith("/slow")) {
      res.writeHead(200, { "content-length": "100000" });
      const t = setInterval(() => res.write("x"), 50);
      res.once("close", () => clearInterval(t));
      setTimeout(() => clearInterval(t), 8000);
      return;
    }
    res.end("private-data");
  };
  upstream = http.createServer({ keepAliveTimeout: 30_000 }, handler);
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", () => r()));
  port = (upstream.address() as AddressInfo).port;
  try {
    const s6 = http.createServer({ keepAliveTimeout: 30_000 }, handler);
    await new Promise<void>((resolve, reject) => {
      s6.once("error", reject);
      s6.listen(0, "::1", () => resolve());
    });
    upstream6 = s6;
    port6 = (s6.address() as AddressInfo).port;
  } catch {
    upstream6 = undefined;
  }
});
afterAll(async () => {
  for (const s of [upstream, upstream6]) {
    if (!s) continue;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

const toLoopback = async (_host: string) => [{ address: "127.0.0.1", family: 4 as const }];
const denyPrivate = (c: ProxyConfig) => {
  c.egress.denyPrivate = true;
  c.upstream.timeoutMs = 1500;
};
const proxyPort = (w: ProxyWorld) => Number(new URL(w.proxyUrl).port);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ask(w: ProxyWorld, target: string, method = "GET") {
  return rawExchange(
    proxyPort(w),
    `${method} ${target} HTTP/1.1\r\nHost: whatever\r\nConnection: close\r\n\r\n`,
    4000,
  );
}

describe("deny_private on: a bodiless request (undici) never reaches a private address", () => {
  it("by names and literals that mean loopback", async () => {
    await withProxyWorld(
      denyPrivate,
      async (w) => {
        const targets = [
          `http://rebind.example:${port}/a`,
          `http://REBIND.example.:${port}/b`,
          `http://localhost:${port}/c`,
          `http://app.localhost:${port}/d`,
          `http://127.0.0.1:${port}/e`,
          `http://127.1:${port}/f`,
          `http://2130706433:${port}/g`,
          `http://0x7f000001:${port}/h`,
          `http://[::1]:${port}/i`,
          `http://[::ffff:127.0.0.1]:${port}/j`,
          `http://[::ffff:7f00:1]:${port}/k`,
          `http://[0:0:0:0:0:ffff:127.0.0.1]:${port}/l`,
          `http://0.0.0.0:${port}/m`,
          `http://[::]:${port}/n`,
          `https://rebind.example:${port}/o`,
        ];
        if (upstream6) targets.push(`http://[::1]:${port6}/p`);
        for (const method of ["GET", "HEAD"]) {
          for (const t of targets) {
            received.length = 0;
            const r = await ask(w, t, method);
            expect({ t, method, status: r.status, seen: received.length }).toEqual({
              t,
              method,
              status: r.status === 403 || r.status === 400 ? r.status : "not refused",
              seen: 0,
            });
            expect(r.text).not.toContain("private-data");
          }
        }
      },
      { resolve: toLoopback },
    );
  }, 60_000);

  it("a name whose resolver answers a public address first and loopback second is not connected to loopback", async () => {
    // 192.0.2.1 (TEST-NET-1) is not routable here; the proxy must pick it or refuse, never 127.0.0.1.
    let calls = 0;
    const rebinding = async (_host: string) => {
      calls += 1;
      return calls === 1
        ? [
            { address: "8.8.8.8", family: 4 as const },
            { address: "127.0.0.1", family: 4 as const },
          ]
        : [{ address: "127.0.0.1", family: 4 as const }];
    };
    await withProxyWorld(
      (c) => {
        denyPrivate(c);
        c.upstream.connectTimeoutMs = 300;
      },
      async (w) => {
        received.length = 0;
        // The first lookup pins 8.8.8.8:port (unreachable in this sandbox, or refused quickly).
        await ask(w, `http://flip.example:${port}/first`);
        // Later lookups answer loopback only: refused.
        const second = await ask(w, `http://flip.example:${port}/second`);
        expect(second.status).toBe(403);
        expect(received).toEqual([]);
      },
      { resolve: rebinding },
    );
  }, 30_000);
});

describe("a reload that turns deny_private on, with pooled undici connections to loopback", () => {
  it("the next request to the same name is refused, not sent on the kept connection", async () => {
    await withProxyWorld(
      (c) => (c.egress.denyPrivate = false),
      async (w) => {
        received.length = 0;
        // Kept-alive app connection and kept-alive upstream: the undici pool keeps the socket.
        const first = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          http
            .get(
              {
                host: "127.0.0.1",
                port: proxyPort(w),
                path: `http://pooled.example:${port}/warm`,
                agent: false,
              },
              (res) => {
                let body = "";
                res.on("data", (c: Buffer) => (body += c.toString()));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
              },
            )
            .on("error", reject);
        });
        expect(first).toEqual({ status: 200, body: "private-data" });
        expect(received).toHaveLength(1);
        const current = w.proxy.live.current;
        expect(
          w.proxy.reload(() => ({ ...current, egress: { ...current.egress, denyPrivate: true } }), "test").ok,
        ).toBe(true);
        for (const m of ["GET", "HEAD"]) {
          const r = await ask(w, `http://pooled.example:${port}/after-${m}`, m);
          expect(r.status).toBe(403);
        }
        expect(received).toHaveLength(1);
      },
      { resolve: toLoopback },
    );
  }, 30_000);

  it("an answer still streaming from loopback through undici is cut by the reload", async () => {
    await withProxyWorld(
      (c) => (c.egress.denyPrivate = false),
      async (w) => {
        const app = net.connect(proxyPort(w), "127.0.0.1");
        app.on("error", () => undefined);
        await new Promise<void>((r) => app.once("connect", () => r()));
        app.write(`GET http://stream.example:${port}/slow HTTP/1.1\r\nHost: x\r\n\r\n`);
        await new Promise<void>((r) => app.once("data", () => r()));
        const current = w.proxy.live.current;
        w.proxy.reload(() => ({ ...current, egress: { ...current.egress, denyPrivate: true } }), "test");
        const closed = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(false), 3000);
          app.once("close", () => {
            clearTimeout(t);
            resolve(true);
          });
        });
        app.destroy();
        expect(closed).toBe(true);
      },
      { resolve: toLoopback },
    );
  }, 30_000);
});

void sleep;
