import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { StokaProxyError } from "../errors.js";
import { hasLoop } from "../http/hop-by-hop.js";
import { parseRequestTarget } from "../http/request-target.js";
import { originOf, upstreamUrl } from "../http/upstream-url.js";
import { identify } from "./client-identity.js";
import type { ProxyContext } from "./context.js";
import { egressRefusal } from "./egress.js";
import { egressDenied, rejectSocket } from "./error-answers.js";
import type { Passthrough } from "./passthrough.js";
import type { TunnelDestination } from "./connections.js";
import { requestFramingProblem } from "./request-checks.js";
import { onIdle } from "./socket-lifetime.js";

/**
 * Requests that ask to switch protocols (`Upgrade`, RFC 9110 §7.8; WebSocket, RFC 6455). Node
 * hands them over as raw sockets, so each one is answered here and never left hanging:
 *
 *   absolute-form, a host that is not paid, Upgrade: websocket ─▶ passed through (101, then bytes)
 *   a paid host (forward, gateway, or inside its tunnel)        ─▶ 501 upgrade_unsupported, closed
 *   any other protocol (h2c, …)                                 ─▶ 501 upgrade_unsupported, closed
 *
 * A paid host's traffic is read request by request so every 402 is judged; a switched protocol
 * could not be, so it is refused, never paid for. The same checks as any request come first:
 * loops, framing, the target, the client token, the egress policy.
 */
export interface UpgradeDeps {
  ctx: ProxyContext;
  passthrough: Passthrough;
  isSelf: (host: string, port: number) => boolean;
  /** An open WebSocket's destination, so a reload that denies it closes it (connections.ts). */
  trackTunnel?: (client: Duplex, destination: TunnelDestination) => void;
  /** The address its upstream connection went to, once known (judged like a blind tunnel's). */
  tunnelAddress?: (client: Duplex, address: string) => void;
}

const unsupported = (reason: string) =>
  new StokaProxyError(
    "upgrade_unsupported",
    reason,
    "send plain HTTP requests to paid hosts; a WebSocket is passed through to other hosts only",
  );

/** `tunnel`: the request came out of a paid host's tunnel (never upgraded). */
export function handleUpgrade(
  deps: UpgradeDeps,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  tunnel: boolean,
): void {
  const { ctx } = deps;
  socket.on("error", () => socket.destroy());
  const refuse = (e: StokaProxyError) => rejectSocket(socket, e);
  if (hasLoop(req.headers, ctx.via))
    return refuse(
      new StokaProxyError(
        "loop_detected",
        "this request has already passed through this proxy",
        "check HTTP_PROXY",
      ),
    );
  const framing = requestFramingProblem(req);
  if (framing) return refuse(framing);
  if (tunnel) return refuse(unsupported("a paid host's tunnel does not switch protocols"));
  const parsed = parseRequestTarget(req.url ?? "/");
  if (!parsed.ok)
    return refuse(
      new StokaProxyError(
        "bad_request",
        `ambiguous request target: ${parsed.reason}`,
        "send an absolute http(s):// URL, percent-encoding what needs it",
      ),
    );
  const target = parsed.target;
  if (target.form !== "absolute")
    return refuse(unsupported("the gateway's paid host does not switch protocols"));
  const who = identify(req.headers, ctx.config.clients, ctx.config.clientName, false);
  if (!who.ok)
    return refuse(new StokaProxyError("proxy_auth_required", who.reason, "send your client token"));
  if (deps.isSelf(target.host, target.port))
    return refuse(
      new StokaProxyError(
        "loop_detected",
        "the request targets this proxy itself",
        "check HTTP_PROXY and NO_PROXY",
      ),
    );
  if (ctx.paidHost(target.host, target.port))
    return refuse(unsupported(`${target.host} is a paid host, and a switched protocol cannot be paid for`));
  const refusal = egressRefusal(ctx.config.egress, target.host, target.port);
  if (refusal) return refuse(egressDenied(refusal));
  const protocol = String(req.headers.upgrade ?? "").toLowerCase();
  if (req.method !== "GET" || protocol !== "websocket")
    return refuse(
      unsupported(`only a GET with Upgrade: websocket is passed through, not ${protocol || "this"}`),
    );
  const origin = originOf(target.scheme, target.host, target.port);
  const url = upstreamUrl(origin, target.path);
  req.url = `${url.pathname}${url.search}`;
  req.headers.host = url.host;
  // Neither side may sit silent forever: the tunnel's idle timeout applies, as to a blind tunnel.
  onIdle(socket, ctx.config.timeouts.tunnelIdleMs, () => socket.destroy());
  deps.trackTunnel?.(socket, { host: target.host, port: target.port });
  const told = deps.tunnelAddress;
  deps.passthrough.upgrade(
    req,
    socket,
    head,
    origin,
    (e) => refuse(e),
    told ? (address) => told(socket, address) : undefined,
  );
}
