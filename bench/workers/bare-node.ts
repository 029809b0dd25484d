import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { issueLeafCertificate, loadCertificateAuthority } from "../../src/tls/certificates.js";
import { serveIpc } from "./ipc.js";

/**
 * Bare Node peers: the least a forward proxy can do in Node, as a yardstick.
 *
 *   forward       absolute-form → http.request with a keep-alive agent; CONNECT → blind tunnel
 *   http-proxy-3  absolute-form → http-proxy-3 with a keep-alive agent (what stoka-proxy's
 *                 pass-through builds on); CONNECT → blind tunnel
 *   mitm          absolute-form as `forward`; CONNECT → TLS terminated with a leaf from the test
 *                 CA, each request inside forwarded to the target over a keep-alive https agent
 *
 * No logging, no header policy beyond the hop-by-hop fields, no payment.
 */
interface Options {
  mode: "forward" | "http-proxy-3" | "mitm";
  caCertFile: string;
  caKeyFile: string;
  upstreamCaFile: string;
}
const options = JSON.parse(process.argv[2] ?? "{}") as Options;
const upstreamCa = [readFileSync(options.upstreamCaFile, "utf8")];

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
const httpsAgent = new https.Agent({
  keepAlive: true,
  maxSockets: Infinity,
  maxFreeSockets: 1024,
  ca: upstreamCa,
});
const HOP = [
  "connection",
  "proxy-connection",
  "keep-alive",
  "proxy-authorization",
  "te",
  "trailer",
  "upgrade",
];

function strip(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...headers };
  for (const h of HOP) delete out[h];
  return out;
}

function forward(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  const secure = url.protocol === "https:";
  const up = (secure ? https : http).request(
    {
      host: url.hostname,
      port: url.port || (secure ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      method: req.method,
      headers: strip(req.headers),
      agent: secure ? httpsAgent : httpAgent,
    },
    (ur) => {
      res.writeHead(ur.statusCode ?? 502, strip(ur.headers));
      ur.pipe(res);
    },
  );
  up.on("error", () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(up);
}

const proxy3 = createProxyServer({ xfwd: false, changeOrigin: false, ws: false });
function forwardProxy3(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  req.url = `${url.pathname}${url.search}`;
  proxy3.web(
    req,
    res,
    { target: url.origin, agent: url.protocol === "https:" ? httpsAgent : httpAgent },
    () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    },
  );
}

const handle = options.mode === "http-proxy-3" ? forwardProxy3 : forward;

function blindTunnel(socket: Duplex, host: string, port: number, head: Buffer): void {
  const up = net.connect({ host, port });
  up.setNoDelay(true);
  const close = () => {
    socket.destroy();
    up.destroy();
  };
  up.on("error", close);
  socket.on("error", close);
  up.on("connect", () => {
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    if (head.length > 0) up.write(head);
    socket.pipe(up);
    up.pipe(socket);
  });
  up.on("close", () => socket.destroy());
  socket.on("close", () => up.destroy());
}

const ca = await loadCertificateAuthority(
  readFileSync(options.caCertFile, "utf8"),
  readFileSync(options.caKeyFile, "utf8"),
);
const contexts = new Map<string, Promise<tls.SecureContext>>();
function contextFor(host: string): Promise<tls.SecureContext> {
  let c = contexts.get(host);
  if (!c) {
    c = issueLeafCertificate(ca, [host]).then((leaf) =>
      tls.createSecureContext({ cert: `${leaf.certPem.trim()}\n${ca.certPem.trim()}\n`, key: leaf.keyPem }),
    );
    contexts.set(host, c);
  }
  return c;
}

const targets = new WeakMap<object, string>();
const inner = http.createServer((req, res) => {
  const authority = targets.get(req.socket) ?? "invalid";
  handle(req, res, new URL(req.url ?? "/", `https://${authority}`));
});
inner.keepAliveTimeout = 60_000;

const server = http.createServer((req, res) => {
  let url: URL;
  try {
    url = new URL(req.url ?? "");
  } catch {
    res.writeHead(400).end();
    return;
  }
  handle(req, res, url);
});
server.keepAliveTimeout = 60_000;
server.on("connect", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
  socket.on("error", () => socket.destroy());
  const m = /^(.+):(\d+)$/.exec(req.url ?? "");
  if (!m?.[1] || !m[2]) {
    socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
    return;
  }
  const host = m[1].replace(/^\[|\]$/g, "");
  const port = Number(m[2]);
  if (options.mode !== "mitm") return blindTunnel(socket, host, port, head);
  // A TLS client waits for the 200 before its ClientHello; bytes before it are not TLS to us.
  if (head.length > 0) {
    socket.destroy();
    return;
  }
  socket.pause();
  contextFor(host).then(
    (secureContext) => {
      socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      const secure = new tls.TLSSocket(socket, {
        isServer: true,
        secureContext,
        ALPNProtocols: ["http/1.1"],
      });
      secure.on("error", () => secure.destroy());
      targets.set(secure, `${host.includes(":") ? `[${host}]` : host}:${port}`);
      inner.emit("connection", secure);
      socket.resume();
    },
    () => socket.destroy(),
  );
});
for (const s of [server, inner]) s.on("clientError", (_e, socket: Duplex) => socket.destroy());

await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
serveIpc(
  { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` },
  () => Promise.reject(new Error("no requests")),
  async () => {
    server.closeAllConnections();
    inner.closeAllConnections();
    server.close();
    httpAgent.destroy();
    httpsAgent.destroy();
  },
);
