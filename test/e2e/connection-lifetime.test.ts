import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import {
  closedWithin,
  connect,
  openTunnel,
  rawExchange,
  readUntilClosed,
  serverSideSockets,
  tcpTable,
  until,
} from "../support/sockets.js";

/**
 * Every client connection ends: tunnels whose client left, idle tunnels and keep-alive
 * connections, clients that never speak, connections past the caps (answered 503), and
 * close() takes them all down at once. Raw sockets, since real clients behave.
 */
const PAID = "test.api.stoka.space";

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await origin.close();
});

const portOf = (w: ProxyWorld) => Number(new URL(w.proxyUrl).port);
const closeWait = (w: ProxyWorld) => serverSideSockets(portOf(w)).filter((e) => e.state === "CLOSE_WAIT");

async function expectOpen(w: ProxyWorld, n: number): Promise<void> {
  await until(async () => (await w.proxy.openConnections()) === n, 3000);
  expect(await w.proxy.openConnections()).toBe(n);
}

/** Open connections and CLOSE-WAIT sockets on the proxy's port both back to zero. */
async function expectNoLeak(w: ProxyWorld, ms: number): Promise<void> {
  await until(async () => (await w.proxy.openConnections()) === 0 && closeWait(w).length === 0, ms);
  expect(closeWait(w)).toEqual([]);
  expect(await w.proxy.openConnections()).toBe(0);
}

describe("with default timeouts", () => {
  let w: ProxyWorld;
  beforeAll(async () => {
    w = await startProxyWorld();
  });
  afterAll(async () => {
    await w.close();
  });

  it("600 clients that CONNECT, read the 200 and close leave no socket behind", async () => {
    const port = portOf(w);
    for (let batch = 0; batch < 12; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const target = i % 2 === 0 ? `localhost:${origin.port}` : `${PAID}:443`;
          const s = await openTunnel(port, target);
          s.end();
          await closedWithin(s, 5000);
        }),
      );
    }
    // The headers timeout is 30 s here: only noticing the FIN can release them this fast.
    await expectNoLeak(w, 5000);
  }, 60_000);

  it("a refused CONNECT (403) is released even when the client never closes its side", async () => {
    const world = await startProxyWorld((c) => {
      c.egress = { allowHosts: ["allowed.test"], denyHosts: [], allowPorts: [], denyPrivate: false };
    });
    try {
      const port = portOf(world);
      const clients: net.Socket[] = [];
      const answers = await Promise.all(
        Array.from({ length: 20 }, async () => {
          // allowHalfOpen: the client reads the answer and the proxy's FIN, never sends its own.
          const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
          clients.push(s);
          await new Promise((r) => s.once("connect", r));
          const text = new Promise<string>((resolve) => {
            let got = "";
            s.on("data", (c: Buffer) => (got += c.toString("latin1")));
            s.once("end", () => resolve(got));
          });
          s.write("CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n");
          return text;
        }),
      );
      expect(answers.every((a) => a.startsWith("HTTP/1.1 403"))).toBe(true);
      await expectNoLeak(world, 5000);
      for (const s of clients) s.destroy();
    } finally {
      await world.close();
    }
  });

  it("close() returns promptly with tunnels of every kind and idle clients open", async () => {
    // A target that never reads: its side of the tunnel cannot finish gracefully.
    const targetSides: net.Socket[] = [];
    const stuck = net.createServer({ pauseOnConnect: true }, (c) => targetSides.push(c));
    await new Promise<void>((r) => stuck.listen(0, "127.0.0.1", () => r()));
    const world = await startProxyWorld();
    try {
      const port = portOf(world);
      const blind = await openTunnel(port, `127.0.0.1:${(stuck.address() as net.AddressInfo).port}`);
      blind.write(Buffer.alloc(4 * 1024 * 1024)); // more than the socket buffers hold
      const halfOpen = await openTunnel(port, `${PAID}:443`);
      const plainPaid = await openTunnel(port, `${PAID}:80`);
      plainPaid.write(`GET /.well-known/stoka.json HTTP/1.1\r\nHost: ${PAID}\r\n\r\n`);
      const idle = await connect(port);
      await until(() => targetSides.length === 1, 2000);
      expect(await world.proxy.openConnections()).toBe(4);
      const clientsClosed = Promise.all([blind, halfOpen, plainPaid, idle].map((s) => closedWithin(s, 5000)));
      // The proxy's own socket to the target (this process holds both ends: match the port).
      const stuckPort = (stuck.address() as net.AddressInfo).port;
      const proxyToTarget = () => tcpTable().filter((e) => e.remotePort === stuckPort && e.inode !== 0);
      expect(proxyToTarget()).toHaveLength(1);
      const started = Date.now();
      const done = await Promise.race([
        world.close().then(() => "closed"),
        new Promise((r) => setTimeout(() => r("hung"), 5000)),
      ]);
      expect(done).toBe("closed");
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await clientsClosed).toEqual([true, true, true, true]);
      expect(await until(() => proxyToTarget().length === 0, 2000)).toBe(true);
    } finally {
      for (const c of targetSides) c.destroy();
      stuck.close();
    }
  });
});

describe("with short timeouts", () => {
  let w: ProxyWorld;
  beforeAll(async () => {
    w = await startProxyWorld((c) => {
      c.timeouts = { headersMs: 400, requestMs: 2000, clientIdleMs: 400, tunnelIdleMs: 600 };
    });
  });
  afterAll(async () => {
    await w.close();
  });

  it("a keep-alive client idle past client_idle is closed", async () => {
    const s = await connect(portOf(w));
    const answer = readUntilClosed(s, 4000);
    s.write(`GET http://localhost:${origin.port}/ka HTTP/1.1\r\nHost: localhost:${origin.port}\r\n\r\n`);
    const a = await answer;
    expect(a.status).toBe(200);
    expect(a.closed).toBe(true);
  });

  it("a slow answer, longer than client_idle, still arrives (idle is between requests)", async () => {
    const slow = http.createServer((_req, res) => {
      setTimeout(() => res.end("late"), 1500);
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", () => r()));
    try {
      const port = (slow.address() as net.AddressInfo).port;
      const a = await rawExchange(
        portOf(w),
        `GET http://127.0.0.1:${port}/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      );
      expect(a.status).toBe(200);
      expect(a.body).toContain("late");
    } finally {
      slow.closeAllConnections();
      slow.close();
    }
  });

  it("a client that connects and sends nothing is answered 408 and closed", async () => {
    const s = await connect(portOf(w));
    const a = await readUntilClosed(s, 4000);
    expect(a.closed).toBe(true);
    expect(a.status).toBe(408);
    expect(a.headers["x-stoka-proxy-error"]).toBe("request_timeout");
  });

  it("a body that stops arriving is answered 408 after the request timeout, never forwarded", async () => {
    const before = origin.received.length;
    const s = await connect(portOf(w));
    const answer = readUntilClosed(s, 5000);
    s.write(
      `POST http://localhost:${origin.port}/stalled HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789`,
    );
    const a = await answer;
    expect(a.status).toBe(408);
    expect(a.headers["x-stoka-proxy-error"]).toBe("request_timeout");
    expect(origin.received.slice(before).filter((r) => r.url === "/stalled")).toEqual([]);
  });

  it("a CONNECT that never sends a first byte is closed after the header timeout", async () => {
    const s = await openTunnel(portOf(w), `localhost:${origin.port}`);
    expect(await closedWithin(s, 4000)).toBe(true);
  });

  it("a blind tunnel idle past tunnel_idle is closed, on both sides", async () => {
    const before = origin.received.length;
    const s = await openTunnel(portOf(w), `localhost:${origin.port}`);
    const answer = readUntilClosed(s, 4000);
    s.write(`GET /blind HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const a = await answer;
    expect(a.status).toBe(200);
    expect(a.closed).toBe(true);
    expect(origin.received.length).toBe(before + 1);
    await expectNoLeak(w, 3000);
  });

  it("an active blind tunnel outlives the header, request and idle timeouts", async () => {
    const echo = net.createServer((c) => c.pipe(c));
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    try {
      const s = await openTunnel(portOf(w), `127.0.0.1:${(echo.address() as net.AddressInfo).port}`);
      s.resume();
      let echoed = 0;
      s.on("data", (c: Buffer) => (echoed += c.length));
      // 3 s of traffic every 200 ms: past headers (0.4 s), request (2 s) and idle (0.6 s).
      for (let i = 0; i < 15; i++) {
        expect(s.destroyed).toBe(false);
        s.write("ping");
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(echoed).toBe(60);
      expect(s.destroyed).toBe(false);
      s.destroy();
    } finally {
      echo.close();
    }
  });

  it("a paid host's tunnel (plain HTTP) idle past tunnel_idle is closed", async () => {
    const s = await openTunnel(portOf(w), `${PAID}:80`);
    const answer = readUntilClosed(s, 4000);
    s.write(`GET /.well-known/stoka.json HTTP/1.1\r\nHost: ${PAID}\r\n\r\n`);
    const a = await answer;
    expect(a.status).toBe(200);
    expect(a.closed).toBe(true);
  });

  it("an intercepted TLS tunnel idle past tunnel_idle is closed", async () => {
    const raw = await openTunnel(portOf(w), `${PAID}:443`);
    const secure = tls.connect({ socket: raw, servername: PAID, ca: w.sandbox.ca.certPem });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
    });
    const answer = readUntilClosed(secure, 4000);
    secure.write(`GET /.well-known/stoka.json HTTP/1.1\r\nHost: ${PAID}\r\n\r\n`);
    const a = await answer;
    expect(a.status).toBe(200);
    expect(a.closed).toBe(true);
    await expectNoLeak(w, 3000);
  });

  it("a client's Connection: close is honoured on a passthrough answer", async () => {
    const s = await connect(portOf(w));
    const answer = readUntilClosed(s, 300); // well under client_idle + Node's 1 s grace
    s.write(`GET http://localhost:${origin.port}/c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    const a = await answer;
    expect(a.status).toBe(200);
    expect(a.headers.connection).toBe("close");
    expect(a.closed).toBe(true);
  });

  it("a half-closed blind tunnel (FIN after the request) is released", async () => {
    const s = await openTunnel(portOf(w), `localhost:${origin.port}`);
    const answer = readUntilClosed(s, 4000);
    s.end(`GET /half HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const a = await answer;
    expect(a.status).toBe(200);
    await expectNoLeak(w, 3000);
  });
});

describe("connection caps", () => {
  let w: ProxyWorld;
  beforeAll(async () => {
    w = await startProxyWorld((c) => {
      c.connections = { maxTotal: 5, maxPerClient: 3 };
    });
  });
  afterAll(async () => {
    await w.close();
  });

  const get = (s: net.Socket) => {
    const answer = readUntilClosed(s, 3000);
    s.write(
      `GET http://localhost:${origin.port}/cap HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
    );
    return answer;
  };

  it("past the per-client cap a connection gets 503 too_many_connections and is closed; it frees when one closes", async () => {
    const port = portOf(w);
    const held = await Promise.all([0, 1, 2].map(() => connect(port, "127.0.0.1")));
    await expectOpen(w, 3);
    const refused = await get(await connect(port, "127.0.0.1"));
    expect(refused.status).toBe(503);
    expect(refused.closed).toBe(true);
    expect(refused.headers["x-stoka-proxy-error"]).toBe("too_many_connections");
    expect(JSON.parse(refused.body)).toMatchObject({ code: "too_many_connections" });
    // Another client still gets in.
    expect((await get(await connect(port, "127.0.0.2"))).status).toBe(200);
    // One of the three closes: the client is under its cap again.
    held[0]?.destroy();
    await expectOpen(w, 2);
    expect((await get(await connect(port, "127.0.0.1"))).status).toBe(200);
    for (const s of held) s.destroy();
    await expectOpen(w, 0);
  });

  it("past the overall cap every client gets 503", async () => {
    const port = portOf(w);
    const held = await Promise.all(
      ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.3"].map((a) => connect(port, a)),
    );
    await expectOpen(w, 5);
    const refused = await get(await connect(port, "127.0.0.4"));
    expect(refused.status).toBe(503);
    expect(refused.headers["x-stoka-proxy-error"]).toBe("too_many_connections");
    for (const s of held) s.destroy();
    await expectOpen(w, 0);
    expect((await get(await connect(port, "127.0.0.4"))).status).toBe(200);
  });

  it("tunnels count against the cap too", async () => {
    const port = portOf(w);
    const tunnels = await Promise.all([0, 1, 2].map(() => openTunnel(port, `localhost:${origin.port}`)));
    const refused = await get(await connect(port, "127.0.0.1"));
    expect(refused.status).toBe(503);
    for (const s of tunnels) s.destroy();
    await expectOpen(w, 0);
  });
});
