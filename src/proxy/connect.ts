import net from "node:net";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { ProxyContext } from "./context.js";
import { identify } from "./client-identity.js";
import { egressRefusal } from "./egress.js";
import type { EgressPolicy } from "../config/config.js";
import { hasLoop } from "../http/hop-by-hop.js";
import { parseAuthority as parseHostPort } from "../http/host-name.js";
import { resolveAllowed, systemResolver } from "./pinned-lookup.js";
import type { Resolver } from "./pinned-lookup.js";
import { finishThenDestroy, onIdle } from "./socket-lifetime.js";
import { StokaProxyError } from "../errors.js";
import type { ErrorCode } from "../errors.js";
import { rejectSocket } from "./error-answers.js";
import type { TunnelDestination } from "./connections.js";

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

/**
 * Where requests parsed out of a tunnel socket were headed, and for whom. Handed with the
 * socket to whoever serves the tunnel's requests (`serveTunnel`, or TLS interception first).
 */
export interface TunnelSession extends TunnelTarget {
  secure: boolean;
  client: string;
}

export interface ConnectDeps {
  ctx: ProxyContext;
  /** Serves the HTTP requests read from a paid host's tunnel (origin-form), for `session`. */
  serveTunnel: (socket: Duplex, session: TunnelSession) => void;
  /** Terminates TLS for a paid host; undefined until interception is configured. */
  interceptTls?: (socket: Duplex, session: TunnelSession) => void;
  onTunnel?: (kind: "blind" | "mitm" | "http", target: TunnelTarget) => void;
  /** True when host:port is this proxy's own listener (a tunnel to ourselves is a loop). */
  isSelf?: (target: TunnelTarget) => boolean;
  /** Name resolution for blind tunnels (pinned-lookup.ts); the system resolver by default. */
  resolve?: Resolver;
  /**
   * Each blind tunnel's socket to its target, so close() can destroy it with the client's,
   * and where it goes, so a reload that denies it closes it.
   */
  trackUpstream?: (socket: net.Socket, client: Duplex, destination: TunnelDestination) => void;
}

/** A CONNECT target: a plain host:port (RFC 9110 §9.3.6), the host normalised; else null. */
export function parseAuthority(authority: string): TunnelTarget | null {
  const parsed = parseHostPort(authority);
  if (!parsed.ok || parsed.port === undefined) return null;
  return { host: parsed.host, port: parsed.port };
}

export function handleConnect(deps: ConnectDeps, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const { ctx } = deps;
  socket.on("error", () => socket.destroy());
  const reject = (code: ErrorCode, reason: string, hint: string, client?: string) => {
    if (code === "proxy_auth_required" || code === "egress_denied")
      ctx.securityEvent(code, {
        host: req.url ?? "",
        route: "connect",
        detail: reason,
        ...(client ? { client } : {}),
      });
    rejectSocket(socket, new StokaProxyError(code, reason, hint));
  };
  if (hasLoop(req.headers, ctx.via)) {
    return reject(
      "loop_detected",
      "request loops through this proxy",
      "check HTTPS_PROXY and the upstream URLs",
    );
  }
  const target = parseAuthority(req.url ?? "");
  if (!target)
    return reject(
      "bad_request",
      "CONNECT needs a plain host:port",
      "send CONNECT host:port (IPv6 in brackets)",
    );
  if (deps.isSelf?.(target))
    return reject("loop_detected", "the tunnel targets this proxy itself", "check HTTPS_PROXY and NO_PROXY");
  const who = identify(req.headers, ctx.config.clients, ctx.config.clientName, false);
  if (!who.ok) return reject("proxy_auth_required", who.reason, "send your client token");
  const session: TunnelSession = { ...target, secure: false, client: who.client };
  const paid = ctx.paidHost(target.host, target.port) !== undefined;
  const refusal = paid ? null : egressRefusal(ctx.config.egress, target.host, target.port);
  if (refusal)
    return reject("egress_denied", refusal, "ask the operator to allow this host in egress", who.client);
  socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");

  const decide = (first: Buffer) => {
    socket.pause();
    if (first.length > 0) socket.unshift(first);
    const isTls = first[0] === 0x16;
    if (paid && !isTls) {
      deps.onTunnel?.("http", target);
      deps.serveTunnel(socket, session);
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
    blindTunnel(socket, target, ctx.config.egress, deps.resolve ?? systemResolver, {
      idleMs: ctx.config.timeouts.tunnelIdleMs,
      connectMs: ctx.config.upstream.connectTimeoutMs,
      ...(deps.trackUpstream ? { track: deps.trackUpstream } : {}),
    });
  };
  if (head.length > 0) decide(head);
  else awaitFirstBytes(socket, ctx.config.timeouts.headersMs, decide);
}

/**
 * The first bytes after the 200 decide what the tunnel is. A client that closes, half-closes
 * (FIN) or fails before sending any, or says nothing within `timeoutMs`, is closed: the socket
 * left the http.Server at the CONNECT, so nothing else would ever release it.
 */
function awaitFirstBytes(socket: Duplex, timeoutMs: number, then: (first: Buffer) => void): void {
  const gone = () => {
    stop();
    socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    stop();
    then(chunk);
  };
  const timer = setTimeout(gone, timeoutMs);
  function stop() {
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("end", gone);
    socket.off("close", gone);
  }
  socket.on("data", onData);
  socket.once("end", gone);
  socket.once("close", gone);
}

interface TunnelLifetime {
  idleMs: number;
  connectMs: number;
  track?: (socket: net.Socket, client: Duplex, destination: TunnelDestination) => void;
}

/**
 * Bytes both ways, untouched; either side closing closes both. The name is resolved once and
 * the address checked and pinned, so DNS cannot point an allowed name at a denied address.
 */
function blindTunnel(
  client: Duplex,
  target: TunnelTarget,
  policy: EgressPolicy,
  resolve: Resolver,
  lifetime: TunnelLifetime,
): void {
  resolveAllowed(policy, resolve, target.host).then(
    (a) => {
      // The client may have left (or the proxy closed) while the name resolved.
      if (client.destroyed) return;
      connectBlind(client, { host: a.address, port: target.port }, lifetime, target.host);
    },
    () => client.destroy(),
  );
}

/**
 * No http.Server watches a tunnel, so its idle timeout is set here, on both sockets (bytes
 * either way touch both). A FIN is passed on by pipe(); once one side is closed the other
 * finishes writing what it holds and is released, so neither side outlives the tunnel.
 */
function connectBlind(client: Duplex, target: TunnelTarget, lifetime: TunnelLifetime, name: string): void {
  const upstream = net.connect({ host: target.host, port: target.port });
  lifetime.track?.(upstream, client, { host: name, port: target.port, address: target.host });
  upstream.setNoDelay(true);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  upstream.on("error", close);
  client.on("error", close);
  onIdle(client, lifetime.idleMs, close);
  onIdle(upstream, lifetime.connectMs, close);
  upstream.on("connect", () => {
    upstream.setTimeout(lifetime.idleMs);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
  upstream.on("close", () => finishThenDestroy(client));
  client.on("close", () => finishThenDestroy(upstream));
}
