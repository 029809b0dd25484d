import http from "node:http";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { POOL } from "../../src/http/upstream-client.js";
import { startProxyWorld, withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { rawExchange } from "../support/sockets.js";
import { startRawUpstream } from "../support/raw-upstream.js";
import type { RawUpstream } from "../support/raw-upstream.js";

/**
 * Attack review of b5d9155 (undici upstream client), question 4: resource exhaustion.
 *
 * undici's body timeout is suspended while the parser is paused by back-pressure
 * (node_modules/undici/lib/dispatcher/client-h1.js onParserTimeout: `if (!paused)`), while
 * Node's client (`proxyReq.setTimeout` / `res.setTimeout`: a socket idle timeout) fired on a
 * socket that carried nothing because the app stopped reading. So on the undici paths an app
 * that stops reading, or that leaves while the paid-host answer is piped (pipeUpstream does
 * not destroy the source when the app's response closes), holds the upstream connection for
 * as long as the upstream keeps it open: the configured timeout no longer bounds it.
 */
const TIMEOUT_MS = 800;
const PAID = "http://test.api.stoka.space";
let w: ProxyWorld;
let paidUpstream: (s: net.Socket, req: string) => void = () => undefined;

/** Writes a body that never ends, as fast as the socket takes it (bounded: 64 MiB in all). */
function endlessBody(s: net.Socket): void {
  s.write("HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n");
  const chunk = Buffer.alloc(64 * 1024, 120);
  let sent = 0;
  const pump = () => {
    while (!s.destroyed && sent < 64 << 20) {
      sent += chunk.length;
      if (!s.write(chunk)) return void s.once("drain", pump);
    }
  };
  pump();
}

let paidServer: RawUpstream;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

beforeAll(async () => {
  paidServer = await startRawUpstream((s, req) => paidUpstream(s, req));
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = TIMEOUT_MS;
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
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(25);
  return cond();
}

/** An app that sends `request` and then never reads (its socket paused for good). */
async function stuckApp(request: string): Promise<net.Socket> {
  const app = net.connect(proxyPort(), "127.0.0.1");
  app.on("error", () => undefined);
  await new Promise<void>((r) => app.once("connect", () => r()));
  app.pause();
  app.write(request);
  closers.push(async () => void app.destroy());
  return app;
}

describe("an app that never reads its answer", () => {
  it("pass-through (Node path, a body of Content-Length 0): the upstream connection is let go within the timeout (baseline)", async () => {
    const up = await startRawUpstream((s) => endlessBody(s));
    closers.push(up.close);
    await stuckApp(`POST http://127.0.0.1:${up.port}/big HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
    expect(await until(() => up.open() === 1, 2000)).toBe(true);
    expect(await until(() => up.open() === 0, TIMEOUT_MS * 5)).toBe(true);
  });

  it("pass-through (undici path, a bodiless GET): the upstream connection is let go within the timeout", async () => {
    const up = await startRawUpstream((s) => endlessBody(s));
    closers.push(up.close);
    await stuckApp(`GET http://127.0.0.1:${up.port}/big HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(await until(() => up.open() === 1, 2000)).toBe(true);
    // HOLE: undici's bodyTimeout does not run while back-pressure has it paused.
    expect(await until(() => up.open() === 0, TIMEOUT_MS * 5)).toBe(true);
  });

  it("paid host (undici `send`): the upstream connection is let go within the timeout", async () => {
    const before = paidServer.open();
    paidUpstream = (s) => endlessBody(s);
    await stuckApp(`GET ${PAID}/v1/objects/huge HTTP/1.1\r\nHost: test.api.stoka.space\r\n\r\n`);
    expect(await until(() => paidServer.open() > before, 2000)).toBe(true);
    expect(await until(() => paidServer.open() === before, TIMEOUT_MS * 5)).toBe(true);
  });
});

describe("an app that leaves in the middle of a paid host's answer", () => {
  it("paid host (undici `send`, pipeUpstream): the upstream connection goes with the app", async () => {
    const before = paidServer.open();
    paidUpstream = (s) => endlessBody(s);
    const app = net.connect(proxyPort(), "127.0.0.1");
    app.on("error", () => undefined);
    await new Promise<void>((r) => app.once("connect", () => r()));
    app.write(`GET ${PAID}/v1/objects/huge HTTP/1.1\r\nHost: test.api.stoka.space\r\n\r\n`);
    await new Promise<void>((r) => app.once("data", () => r()));
    expect(paidServer.open()).toBeGreaterThan(before);
    app.destroy();
    // HOLE: the UndiciAnswer is unpiped, never destroyed; undici is paused, so no body
    // timeout either: the pooled paid-host connection (256 per origin) is held for good.
    expect(await until(() => paidServer.open() === before, TIMEOUT_MS * 5)).toBe(true);
  });

  it("after such leaks, the paid host still serves other apps", async () => {
    // Each leaked request holds one of the paid host's undici connections; a few are enough to
    // show they are never returned (the pool has 256).
    paidUpstream = (s, req) => {
      if (req.includes("/v1/objects/ok")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      else endlessBody(s);
    };
    const r = await rawExchange(
      proxyPort(),
      `GET ${PAID}/v1/objects/ok HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n`,
      3000,
    );
    expect(r.status).toBe(200);
  });
});

describe("timeouts of the undici pass-through path", () => {
  it("an upstream that never answers: 504 within about the timeout", async () => {
    const up = await startRawUpstream(() => undefined);
    closers.push(up.close);
    const started = Date.now();
    const r = await rawExchange(
      proxyPort(),
      `GET http://127.0.0.1:${up.port}/silent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      TIMEOUT_MS * 6,
    );
    expect(r.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS * 4);
    expect(await until(() => up.open() === 0, 2000)).toBe(true);
  });

  it("an upstream that stops in the middle of its body: the app's connection is cut within about the timeout", async () => {
    const up = await startRawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart"));
    closers.push(up.close);
    const started = Date.now();
    const r = await rawExchange(
      proxyPort(),
      `GET http://127.0.0.1:${up.port}/stall HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      TIMEOUT_MS * 6,
    );
    expect(r.closed).toBe(true);
    expect(r.status).toBe(200);
    expect(r.body).toBe("part");
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS * 4);
    expect(await until(() => up.open() === 0, 2000)).toBe(true);
  });

  it("an app that leaves while its request waits for the head: the upstream connection goes", async () => {
    const up = await startRawUpstream(() => undefined);
    closers.push(up.close);
    const app = net.connect(proxyPort(), "127.0.0.1");
    app.on("error", () => undefined);
    await new Promise<void>((r) => app.once("connect", () => r()));
    app.write(`GET http://127.0.0.1:${up.port}/wait HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(await until(() => up.open() === 1, 2000)).toBe(true);
    app.destroy();
    expect(await until(() => up.open() === 0, 1000)).toBe(true);
  });

  it("many apps that leave mid-answer leave no upstream connection behind (bounded: 40)", async () => {
    const up = await startRawUpstream((s) => endlessBody(s));
    closers.push(up.close);
    for (let i = 0; i < 40; i++) {
      const app = net.connect(proxyPort(), "127.0.0.1");
      app.on("error", () => undefined);
      await new Promise<void>((r) => app.once("connect", () => r()));
      app.write(`GET http://127.0.0.1:${up.port}/e${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await new Promise<void>((r) => app.once("data", () => r()));
      app.destroy();
    }
    expect(await until(() => up.open() === 0, 3000)).toBe(true);
  });
});

describe("what the leaks add up to (the pool bounds lowered for the test: POOL is read when a dispatcher is made)", () => {
  it("paid host, POOL.maxSockets = 2: two apps that leave mid-answer, then a third app is still served", async () => {
    const saved = POOL.maxSockets;
    POOL.maxSockets = 2;
    const up = await startRawUpstream((s, req) => {
      if (req.includes("/v1/objects/ok")) s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      else endlessBody(s);
    });
    closers.push(up.close);
    try {
      await withProxyWorld(
        (c) => {
          c.upstream.timeoutMs = TIMEOUT_MS;
          c.paidHosts = c.paidHosts.map((e) => ({ ...e, upstream: new URL(`http://127.0.0.1:${up.port}`) }));
        },
        async (world) => {
          const port = Number(new URL(world.proxyUrl).port);
          for (let i = 0; i < 2; i++) {
            const app = net.connect(port, "127.0.0.1");
            app.on("error", () => undefined);
            await new Promise<void>((r) => app.once("connect", () => r()));
            app.write(`GET ${PAID}/v1/objects/huge${i} HTTP/1.1\r\nHost: test.api.stoka.space\r\n\r\n`);
            await new Promise<void>((r) => app.once("data", () => r()));
            app.destroy();
          }
          await sleep(TIMEOUT_MS * 2);
          const r = await rawExchange(
            port,
            `GET ${PAID}/v1/objects/ok HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n`,
            TIMEOUT_MS * 4,
          );
          // HOLE: both connections are held by the leaked answers; the request waits in
          // undici's queue (no timeout runs before a request is written) and is never answered.
          expect(r.status).toBe(200);
        },
      );
    } finally {
      POOL.maxSockets = saved;
    }
  }, 30_000);

  it("pass-through, POOL.maxTotalSockets = 4 (maxOrigins): with 4 origins kept alive, a 5th origin is still served", async () => {
    const saved = POOL.maxTotalSockets;
    POOL.maxTotalSockets = 4;
    const up = await startRawUpstream((s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    closers.push(up.close);
    try {
      await withProxyWorld(
        (c) => {
          c.upstream.timeoutMs = TIMEOUT_MS;
          c.egress.denyPrivate = false;
        },
        async (world) => {
          const port = Number(new URL(world.proxyUrl).port);
          for (let i = 0; i < 4; i++) {
            const r = await rawExchange(
              port,
              `GET http://o${i}.example:${up.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
              2000,
            );
            expect(r.status).toBe(200);
          }
          const fifth = await rawExchange(
            port,
            `GET http://o-new.example:${up.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
            6000,
          );
          // Node's agent queued it until an idle socket closed (POOL.idleMs); undici's Agent
          // throws MaxOriginsReachedError at once: the app gets a 502 "connect" failure.
          expect(fifth.status).toBe(200);
        },
        { resolve: async () => [{ address: "127.0.0.1", family: 4 as const }] },
      );
    } finally {
      POOL.maxTotalSockets = saved;
    }
  }, 30_000);
});

void http;
