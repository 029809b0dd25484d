import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * Upstream connections to a paid host are pooled (src/http/upstream-client.ts), except the paid
 * retry: it always goes on a connection of its own, never a pooled one, and that connection is
 * not pooled afterwards, so a stale pooled socket can never turn an unsent payment into an
 * indeterminate one. A relay in front of the emulator records which connection carried what.
 */
const BASE = "http://test.api.stoka.space";

interface Seen {
  socket: number;
  paid: boolean;
}

let w: ProxyWorld;
let relay: http.Server;
const seen: Seen[] = [];
let nextSocket = 0;
const socketIds = new WeakMap<object, number>();

beforeAll(async () => {
  const keepAlive = new http.Agent({ keepAlive: true });
  let target = "";
  relay = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    let id = socketIds.get(req.socket);
    if (id === undefined) {
      id = nextSocket += 1;
      socketIds.set(req.socket, id);
    }
    const paid = req.headers["x-payment"] !== undefined || req.headers["payment-signature"] !== undefined;
    seen.push({ socket: id, paid });
    const out = http.request(
      `${target}${req.url ?? "/"}`,
      { method: req.method, headers: req.headers, agent: keepAlive },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", () => resolve()));
  const relayUrl = new URL(`http://127.0.0.1:${(relay.address() as AddressInfo).port}`);
  w = await startProxyWorld((c, sandbox) => {
    target = sandbox.emulator.httpUrl;
    c.paidHosts = c.paidHosts.map((e) => ({ ...e, upstream: relayUrl }));
  });
  resetSwitches(w.sandbox, 0);
});
afterAll(async () => {
  await w.close();
  relay.closeAllConnections();
  await new Promise<void>((resolve) => relay.close(() => resolve()));
});

describe("paid-host upstream connections", () => {
  it("unpaid requests share one pooled connection; every paid retry has a new one of its own", async () => {
    for (let i = 0; i < 4; i += 1) {
      const res = await curl({
        proxy: w.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": `pool-${i}` },
        body: Buffer.from("q".repeat(32)),
      });
      expect(res.status).toBe(201);
    }
    const unpaid = seen.filter((s) => !s.paid);
    const paid = seen.filter((s) => s.paid);
    expect(paid).toHaveLength(4);
    expect(unpaid.length).toBeGreaterThanOrEqual(4);
    // Pooling: the unpaid first sends (and the manifest fetch) reuse one keep-alive connection.
    expect(new Set(unpaid.map((s) => s.socket)).size).toBe(1);
    // The rule: each paid retry on a connection nothing else ever used, before or after.
    for (const p of paid) expect(seen.filter((s) => s.socket === p.socket)).toEqual([p]);
  });
});

describe("pass-through upstream connections", () => {
  it("64 busy keep-alive clients, three waves: the upstream sees no more connections than there are clients", async () => {
    let accepted = 0;
    const origin = http.createServer({ keepAliveTimeout: 30_000 }, (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok");
    });
    origin.on("connection", () => (accepted += 1));
    await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", () => resolve()));
    const port = (origin.address() as AddressInfo).port;
    const proxy = new URL(w.proxyUrl);
    const clients = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const get = () =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(
          {
            host: proxy.hostname,
            port: proxy.port,
            path: `http://127.0.0.1:${port}/x`,
            headers: { host: `127.0.0.1:${port}` },
            agent: clients,
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", reject);
        req.end();
      });
    try {
      for (let wave = 0; wave < 3; wave += 1) {
        const statuses = await Promise.all(Array.from({ length: 64 }, get));
        expect(statuses.every((s) => s === 200)).toBe(true);
      }
      // Idle pooled sockets were once capped at 32: every wave reopened the other half.
      expect(accepted).toBeLessThanOrEqual(64);
    } finally {
      clients.destroy();
      origin.closeAllConnections();
      await new Promise<void>((resolve) => origin.close(() => resolve()));
    }
  });
});
