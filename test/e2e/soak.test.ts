import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { caPaths } from "../../src/tls/ca-store.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import {
  closedWithin,
  connect,
  fdCount,
  openTunnel,
  rawExchange,
  readUntilClosed,
  serverSideSockets,
  tcpStatesOf,
  until,
} from "../support/sockets.js";

/**
 * A bounded soak against a real `stoka-proxy start` process: paid and unpaid requests,
 * tunnels of every kind, aborted requests, half-closed tunnels and silent clients, all mixed.
 * Afterwards (within the short idle timeouts set here) the process holds the same file
 * descriptors and no client socket, nothing sits in CLOSE-WAIT, and SIGTERM exits at once.
 */
const PAID = "test.api.stoka.space";
const STORE_PRICE = 1400n;

/** A non-paid origin with a large streamed answer, to abort in the middle of. */
async function startBulkOrigin(): Promise<{ port: number; hits: () => number; close: () => Promise<void> }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      hits += 1;
      if (req.url === "/big") {
        res.writeHead(200, { "content-type": "application/octet-stream" });
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        let sent = 0;
        const pump = () => {
          while (sent < 64) {
            sent += 1;
            if (!res.write(chunk)) return void res.once("drain", pump);
          }
          res.end();
        };
        pump();
        return;
      }
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

let sb: Sandbox;
let proc: ProxyProcess;
let origin: Awaited<ReturnType<typeof startBulkOrigin>>;
beforeAll(async () => {
  sb = await startSandbox({ emulator: { switches: { popWaitSeconds: 0 } } });
  origin = await startBulkOrigin();
});
afterAll(async () => {
  await proc?.stop("SIGKILL");
  await origin?.close();
  await sb?.close();
});

describe("soak", () => {
  it("mixed traffic, then back to the baseline: fds, sockets, no CLOSE-WAIT; SIGTERM is prompt", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budgets: [{ name: "soak", limits: { day: "1 USDC" } }],
      timeouts: { headers_seconds: 1, request_seconds: 4, client_idle_seconds: 1, tunnel_idle_seconds: 1.5 },
    });
    proc = await startProxyProcess(sb, configPath, dataDir);
    const pid = proc.child.pid as number;
    const port = Number(new URL(proc.url).port);
    const ca = readFileSync(caPaths(dataDir).cert, "utf8");
    const onlyListeners = () => {
      const states = tcpStatesOf(pid);
      return Object.keys(states).every((s) => s === "LISTEN");
    };

    expect(onlyListeners()).toBe(true);
    const baselineFds = fdCount(pid);

    // No keep-alive: the proxy closes idle clients after 1 s here, and a POST reused on a socket
    // it is closing just then fails with "socket hang up" (the keep-alive race, RFC 9112 §9.3.1),
    // which under CI load made this test flaky; idle clients are the silent sockets' part.
    const agent = new http.Agent({ keepAlive: false, maxSockets: 8 });
    let paidOk = 0;
    const statuses: Record<string, number[]> = {};
    const note = (kind: string, status: number | null) => (statuses[kind] ??= []).push(status ?? 0);
    const viaProxy = (path: string, method: string, headers: http.OutgoingHttpHeaders, body?: Buffer) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path, method, headers, agent }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.end(body);
      });
    const abortMidBody = async (target: string, host: string) => {
      const s = await connect(port);
      s.on("error", () => undefined);
      s.write(
        `POST ${target} HTTP/1.1\r\nHost: ${host}\r\nX-Stoka-Key: aborted\r\nContent-Length: 100000\r\n\r\n`,
      );
      s.write(Buffer.alloc(1000, 0x62));
      await new Promise((r) => setTimeout(r, 20));
      s.destroy();
    };
    const abortMidResponse = async (tunnel: boolean) => {
      const s = tunnel ? await openTunnel(port, `127.0.0.1:${origin.port}`) : await connect(port);
      const target = tunnel ? "/big" : `http://127.0.0.1:${origin.port}/big`;
      s.on("error", () => undefined);
      await new Promise<void>((resolve) => {
        s.once("data", () => resolve());
        s.once("close", () => resolve());
        s.resume();
        s.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      });
      s.destroy();
    };
    const silent: net.Socket[] = [];
    const halfClosed: net.Socket[] = [];

    const round = async (r: number) => {
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 3; i++) {
        const key = `soak-${r}-${i}`;
        // Paid, forward (absolute-form) and gateway (origin-form).
        ops.push(
          viaProxy(
            `http://${PAID}/v1/store`,
            "POST",
            { host: PAID, "x-stoka-key": `${key}-f` },
            Buffer.from("f"),
          ).then((s) => {
            note("paid-forward", s);
            if (s === 201) paidOk += 1;
          }),
        );
        ops.push(
          viaProxy("/v1/store", "POST", { host: "proxy", "x-stoka-key": `${key}-g` }, Buffer.from("g")).then(
            (s) => {
              note("paid-gateway", s);
              if (s === 201) paidOk += 1;
            },
          ),
        );
        // Unpaid, to a non-paid origin.
        ops.push(
          viaProxy(`http://127.0.0.1:${origin.port}/u${i}`, "GET", { host: `127.0.0.1:${origin.port}` }).then(
            (s) => note("unpaid", s),
          ),
        );
        // A blind tunnel: one request, then the client closes (FIN or abrupt).
        ops.push(
          (async () => {
            const s = await openTunnel(port, `127.0.0.1:${origin.port}`);
            const answer = readUntilClosed(s, 3000);
            s.write(`GET /t HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
            note("blind", (await answer).status);
          })(),
        );
        // CONNECT to the paid host with plain HTTP inside: paid inside the tunnel.
        ops.push(
          (async () => {
            const s = await openTunnel(port, `${PAID}:80`);
            const answer = readUntilClosed(s, 5000);
            s.write(
              `POST /v1/store HTTP/1.1\r\nHost: ${PAID}\r\nX-Stoka-Key: ${key}-t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nt`,
            );
            const a = await answer;
            note("paid-tunnel", a.status);
            if (a.status === 201) paidOk += 1;
          })(),
        );
        // Aborted requests.
        ops.push(abortMidBody(`http://${PAID}/v1/store`, PAID));
        ops.push(abortMidBody(`http://127.0.0.1:${origin.port}/up`, "127.0.0.1"));
        ops.push(abortMidResponse(i % 2 === 0));
        // Half-closed tunnels and silent clients: left for the proxy to close.
        ops.push(openTunnel(port, `${PAID}:443`).then((s) => (s.end(), halfClosed.push(s))));
        ops.push(connect(port).then((s) => silent.push(s)));
      }
      // One intercepted TLS request and one TLS handshake abandoned half way.
      ops.push(
        (async () => {
          const raw = await openTunnel(port, `${PAID}:443`);
          const secure = tls.connect({ socket: raw, servername: PAID, ca });
          await new Promise<void>((resolve, reject) => {
            secure.once("secureConnect", () => resolve());
            secure.once("error", reject);
          });
          const answer = readUntilClosed(secure, 5000);
          secure.write(`GET /.well-known/stoka.json HTTP/1.1\r\nHost: ${PAID}\r\nConnection: close\r\n\r\n`);
          note("tls", (await answer).status);
        })(),
      );
      ops.push(
        (async () => {
          const raw = await openTunnel(port, `${PAID}:443`);
          const secure = tls.connect({ socket: raw, servername: PAID, ca });
          secure.on("error", () => undefined);
          await new Promise((r) => setTimeout(r, 5));
          secure.destroy();
        })(),
      );
      ops.push(
        rawExchange(port, "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0\r\n\r\n").then((a) =>
          note("malformed", a.status),
        ),
      );
      await Promise.all(ops);
    };

    const deadline = Date.now() + 20_000;
    for (let r = 0; r < 12 && Date.now() < deadline; r++) await round(r);
    agent.destroy();

    // What the traffic got.
    for (const kind of ["paid-forward", "paid-gateway", "paid-tunnel"])
      expect(
        statuses[kind]?.every((s) => s === 201),
        `${kind}: ${statuses[kind]}`,
      ).toBe(true);
    for (const kind of ["unpaid", "blind", "tls"])
      expect(
        statuses[kind]?.every((s) => s === 200),
        kind,
      ).toBe(true);
    expect(statuses["malformed"]?.every((s) => s === 400)).toBe(true);
    // Money: exactly the completed paid requests were charged, aborted ones never.
    expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(BigInt(paidOk) * STORE_PRICE);

    // The proxy closed the silent and half-closed clients by itself.
    const leftOpen = await Promise.all([...silent, ...halfClosed].map((s) => closedWithin(s, 4000)));
    expect(leftOpen.filter((closed) => !closed)).toHaveLength(0);

    // Back to the baseline once the idle timeouts (and the upstreams' own keep-alive) ran out.
    await until(() => onlyListeners() && fdCount(pid) <= baselineFds, 15_000, 200);
    expect(tcpStatesOf(pid)).toEqual({ LISTEN: 2 });
    expect(serverSideSockets(port).filter((e) => e.state === "CLOSE_WAIT")).toEqual([]);
    expect(fdCount(pid)).toBe(baselineFds);

    // SIGTERM with tunnels of every kind and idle clients open: the process exits at once.
    const held = [
      await openTunnel(port, `127.0.0.1:${origin.port}`),
      await openTunnel(port, `${PAID}:443`),
      await openTunnel(port, `${PAID}:80`),
      await connect(port),
    ];
    held[0]?.write("GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    held[1]?.end();
    const started = Date.now();
    await proc.stop("SIGTERM");
    expect(Date.now() - started).toBeLessThan(3000);
    expect(proc.child.exitCode).toBe(0);
    for (const s of held) s.destroy();
  }, 90_000);

  it("with a low file limit, silent clients past the caps starve neither /healthz nor paid requests", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budgets: [{ name: "fd", limits: { day: "1 USDC" } }],
      connections: { max_total: 100, max_per_client: 50 },
    });
    const limited = await startProxyProcess(sb, configPath, dataDir, { fdLimit: 200 });
    const silent: net.Socket[] = [];
    try {
      const port = Number(new URL(limited.url).port);
      const admin = /"admin":"(http:\/\/[^"]+)"/.exec(limited.output())?.[1] ?? "";
      // 300 clients from another address connect and say nothing (30 s header timeout here).
      for (let i = 0; i < 300; i++) {
        const s = net.connect({ port, host: "127.0.0.1", localAddress: "127.0.0.2" });
        s.on("error", () => undefined);
        s.resume();
        silent.push(s);
      }
      await until(() => silent.every((s) => !s.connecting), 5000);
      // The refused ones are answered and closed; the 50 admitted stay, silent.
      const pid = limited.child.pid as number;
      expect(await until(() => (tcpStatesOf(pid).ESTABLISHED ?? 0) <= 50, 5000)).toBe(true);
      const health = await fetch(`${admin}/healthz`);
      expect(health.status).toBe(200);
      const paid = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          {
            host: "127.0.0.1",
            port,
            path: `http://${PAID}/v1/store`,
            method: "POST",
            headers: { host: PAID, "x-stoka-key": "fd-limit" },
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", reject);
        req.end("x");
      });
      expect(paid).toBe(201);
      expect(limited.output()).not.toMatch(/EMFILE/);
    } finally {
      for (const s of silent) s.destroy();
      await limited.stop("SIGTERM");
    }
  }, 60_000);

  it("refuses to start under --insecure-http-parser (flag or NODE_OPTIONS)", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb, {});
    await expect(
      startProxyProcess(sb, configPath, dataDir, { nodeArgs: ["--insecure-http-parser"] }),
    ).rejects.toThrow(/insecure-http-parser/);
    await expect(
      startProxyProcess(sb, configPath, dataDir, { env: { NODE_OPTIONS: "--insecure-http-parser" } }),
    ).rejects.toThrow(/insecure-http-parser/);
  }, 60_000);
});
