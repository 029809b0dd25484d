import net from "node:net";
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import type { ProxyContext } from "./context.js";
import { identify } from "./client-identity.js";
import { egressRefusal } from "./egress.js";
import type { EgressPolicy } from "./egress.js";
import { hasLoop } from "./hop-by-hop.js";
import { parseAuthority as parseHostPort } from "./host-name.js";
import { resolveAllowed, systemResolver } from "./pinned-lookup.js";
import type { Resolver } from "./pinned-lookup.js";

/**
 * CONNECT host:port.
 *
 *   app ──CONNECT host:port──▶ proxy ──200──▶ app; first bytes decide:
 *     plain HTTP (clients that tunnel http://) ─▶ parsed, each request handled like forward
 *     TLS to a paid host ─▶ intercepted by `interceptTls` (tls/intercept), or refused loudly
 *     anything to another host ─▶ blind tunnel (bytes both ways, untouched)
 *
 * A paid host's traffic is never tunnelled blindly: an unpaid 402 must not slip past.
 */
export interface TunnelTarget {
  host: string;
  port: number;
}

/** Where requests parsed out of a tunnel socket were headed, and for whom. */
export interface TunnelSession extends TunnelTarget {
  secure: boolean;
  client: string;
}
export const tunnelTargets = new WeakMap<object, TunnelSession>();

export const PROXY_CHALLENGE = 'Bearer realm="stoka-proxy", Basic realm="stoka-proxy"';

export interface ConnectDeps {
  ctx: ProxyContext;
  /** Serves plain HTTP read from a tunnel (requests are origin-form). */
  innerHttp: Server;
  /** Terminates TLS for a paid host; undefined until interception is configured. */
  interceptTls?: (socket: Duplex, session: TunnelSession) => void;
  onTunnel?: (kind: "blind" | "mitm" | "http", target: TunnelTarget) => void;
  /** True when host:port is this proxy's own listener (a tunnel to ourselves is a loop). */
  isSelf?: (target: TunnelTarget) => boolean;
  /** Name resolution for blind tunnels (pinned-lookup.ts); the system resolver by default. */
  resolve?: Resolver;
}

/** A CONNECT target: a plain host:port (RFC 9110 §9.3.6), the host normalised; else null. */
export function parseAuthority(authority: string): TunnelTarget | null {
  const parsed = parseHostPort(authority);
  if (!parsed.ok || parsed.port === undefined) return null;
  return { host: parsed.host, port: parsed.port };
}

function reject(socket: Duplex, status: string, code: string, reason: string, extra = ""): void {
  const body = JSON.stringify({ error: reason, code });
  socket.end(
    `HTTP/1.1 ${status}\r\n${extra}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Stoka-Proxy-Error: ${code}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export function handleConnect(deps: ConnectDeps, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const { ctx } = deps;
  socket.on("error", () => socket.destroy());
  if (hasLoop(req.headers, ctx.via)) {
    return reject(socket, "508 Loop Detected", "loop_detected", "request loops through this proxy");
  }
  const target = parseAuthority(req.url ?? "");
  if (!target) return reject(socket, "400 Bad Request", "bad_request", "CONNECT needs a plain host:port");
  if (deps.isSelf?.(target))
    return reject(socket, "508 Loop Detected", "loop_detected", "the tunnel targets this proxy itself");
  const who = identify(req.headers, ctx.config.clients, ctx.config.clientName, false);
  if (!who.ok) {
    const challenge = `Proxy-Authenticate: ${PROXY_CHALLENGE}\r\n`;
    return reject(socket, "407 Proxy Authentication Required", "proxy_auth_required", who.reason, challenge);
  }
  const session: TunnelSession = { ...target, secure: false, client: who.client };
  const paid = ctx.paidHost(target.host, target.port) !== undefined;
  const refusal = paid ? null : egressRefusal(ctx.config.egress, target.host, target.port);
  if (refusal) return reject(socket, "403 Forbidden", "egress_denied", refusal);
  socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");

  const decide = (first: Buffer) => {
    socket.pause();
    if (first.length > 0) socket.unshift(first);
    const isTls = first[0] === 0x16;
    if (paid && !isTls) {
      deps.onTunnel?.("http", target);
      tunnelTargets.set(socket, session);
      deps.innerHttp.emit("connection", socket);
      socket.resume();
      return;
    }
    if (paid) {
      if (!deps.interceptTls) {
        ctx.logger.error(
          { host: target.host },
          "TLS to a paid host cannot be intercepted here; closing the tunnel",
        );
        socket.destroy();
        return;
      }
      deps.onTunnel?.("mitm", target);
      // The interceptor resumes the socket once TLS is wired, so no byte is read before.
      deps.interceptTls(socket, { ...session, secure: true });
      return;
    }
    deps.onTunnel?.("blind", target);
    blindTunnel(socket, target, ctx.config.egress, deps.resolve ?? systemResolver);
  };
  if (head.length > 0) decide(head);
  else socket.once("data", (chunk: Buffer) => decide(chunk));
}

/**
 * Bytes both ways, untouched; either side closing closes both. The name is resolved once and
 * the address checked and pinned, so DNS cannot point an allowed name at a denied address.
 */
function blindTunnel(client: Duplex, target: TunnelTarget, policy: EgressPolicy, resolve: Resolver): void {
  resolveAllowed(policy, resolve, target.host).then(
    (a) => connectBlind(client, { host: a.address, port: target.port }),
    () => client.destroy(),
  );
}

function connectBlind(client: Duplex, target: TunnelTarget): void {
  const upstream = net.connect({ host: target.host, port: target.port });
  upstream.setNoDelay(true);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  upstream.on("error", close);
  client.on("error", close);
  upstream.on("connect", () => {
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
  upstream.on("close", () => client.destroy());
  client.on("close", () => upstream.destroy());
}
