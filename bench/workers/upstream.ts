import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { Server } from "node:net";
import { serveIpc } from "./ipc.js";

/**
 * The upstream every contender forwards to, in its own process: a small fixed answer, served
 * over keep-alive, counting the TCP connections (`connection` events) and requests it gets.
 *
 *   plain       http://127.0.0.1:P   a host that is not paid (pass-through, blind tunnels)
 *   paid_http   http://127.0.0.2:P   the paid host over plain HTTP (HTTP_PROXY)
 *   paid_https  https://127.0.0.3:P  the paid host over TLS (HTTPS_PROXY, MITM)
 *
 * Three loopback addresses because stoka-proxy matches paid hosts by name, not port.
 * Keep-alive lasts 60 s (Node's 5 s default would close a proxy's idle pool between rounds).
 */
interface Options {
  certFile: string;
  keyFile: string;
  bodyBytes: number;
}
const options = JSON.parse(process.argv[2] ?? "{}") as Options;
const body = Buffer.alloc(options.bodyBytes, "b");

interface Counts {
  connections: number;
  requests: number;
}
const counts: Record<string, Counts> = {};

function handler(name: string) {
  const c: Counts = (counts[name] = { connections: 0, requests: 0 });
  return {
    c,
    onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => {
      c.requests++;
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
        res.end(body);
      });
    },
  };
}

function tune<S extends http.Server>(server: S, c: Counts): S {
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;
  server.maxHeadersCount = 200;
  // TCP connections, for TLS too: a proxy that reconnects pays a handshake each time.
  (server as unknown as Server).on("connection", () => {
    c.connections++;
  });
  return server;
}

async function listen(server: http.Server, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

const plain = handler("plain");
const paidHttp = handler("paid_http");
const paidHttps = handler("paid_https");
const servers = [
  tune(http.createServer(plain.onRequest), plain.c),
  tune(http.createServer(paidHttp.onRequest), paidHttp.c),
  tune(
    https.createServer(
      { cert: readFileSync(options.certFile), key: readFileSync(options.keyFile) },
      paidHttps.onRequest,
    ),
    paidHttps.c,
  ),
];
const ports = {
  plain: await listen(servers[0] as http.Server, "127.0.0.1"),
  paid_http: await listen(servers[1] as http.Server, "127.0.0.2"),
  paid_https: await listen(servers[2] as http.Server, "127.0.0.3"),
};

serveIpc(
  { ports },
  (msg) => {
    if (msg.type === "counts") return Promise.resolve({ counts: structuredClone(counts) });
    return Promise.reject(new Error(`unknown message ${String(msg.type)}`));
  },
  async () => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  },
);
