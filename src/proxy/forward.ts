import type { IncomingMessage, ServerResponse } from "node:http";
import type { PaidHost } from "../config/config.js";
import type { RequestRecord } from "../observability/request-record.js";
import type { ProxyContext } from "./context.js";
import { egressRefusal } from "./egress.js";
import { normaliseHost } from "../http/host-name.js";
import { servedPaidHost } from "../config/paid-hosts.js";
import { handlePaidHost } from "./paid-host.js";
import type { Passthrough } from "./passthrough.js";
import { egressDenied, sendError } from "./error-answers.js";
import { routeName } from "../stoka/route-names.js";
import { upstreamUrl } from "../http/upstream-url.js";
import { passOrigin, upstreamPath } from "../http/pass-origin.js";

/**
 * Absolute-form requests from apps that use us as HTTP_PROXY (and requests inside tunnels,
 * which arrive here with the tunnel's authority):
 *
 *   app ──GET http://host/path──▶ proxy ─┬─ paid host ──▶ paid-host (wallet auth, or pay and retry) ──▶ its upstream
 *                                        └─ other host ─▶ passthrough (stream, untouched) ────▶ host
 *
 * The target arrives checked (request-target.ts): scheme, normalised host, port and an
 * origin-form path. The URL sent upstream takes its scheme, host and port from the paid host
 * (or from the egress-checked target) and the path as a path; the route name and budgets read
 * that same URL.
 */
export interface ForwardTarget {
  scheme: "http" | "https";
  host: string;
  port: number;
  path: string;
}

export async function handleForward(
  ctx: ProxyContext,
  passthrough: Passthrough,
  req: IncomingMessage,
  res: ServerResponse,
  target: ForwardTarget,
  record: RequestRecord,
): Promise<void> {
  const method = req.method ?? "GET";
  record.host = target.host;
  const entry = ctx.paidHost(target.host, target.port);
  if (entry) {
    const paid = servedPaidHost(entry, target.scheme, target.port);
    const url = upstreamUrl(paid.upstream, target.path);
    record.route = routeName(method, url.pathname);
    return handlePaidHost(ctx, req, res, { host: paid, url }, record);
  }
  record.route = "other";
  const refusal = egressRefusal(ctx.config.egress, target.host, target.port);
  if (refusal) return sendError(res, egressDenied(refusal));
  const origin = passOrigin(target.scheme, target.host, target.port);
  req.url = upstreamPath(origin, target.path);
  // RFC 9112 §3.2.2: the target's authority replaces whatever Host the app sent.
  req.headers.host = origin.authority;
  passthrough.forward(req, res, origin);
}

/** Origin-form requests on the listener: the team-gateway mode, to the configured stoka. */
export async function handleGateway(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
  record: RequestRecord,
  path: string,
): Promise<void> {
  const base = ctx.config.gatewayUpstream;
  const scheme = base.protocol === "https:" ? "https" : "http";
  const port = Number(base.port || (scheme === "https" ? 443 : 80));
  const host = normaliseHost(base.hostname) ?? base.hostname;
  const basePath = base.pathname.replace(/\/$/, "");
  const url = upstreamUrl(base, path, basePath);
  record.host = host;
  record.route = routeName(req.method ?? "GET", url.pathname.slice(basePath.length));
  // The gateway's upstream is configured, so it is where the request and its challenges go;
  // the paid_hosts entry for that authority, if any, gives the payees.
  const entry = ctx.paidHost(host, port);
  const paid: PaidHost = entry
    ? { ...entry, upstream: new URL(base.origin) }
    : { host, upstream: new URL(base.origin), payTo: [] };
  return handlePaidHost(ctx, req, res, { host: paid, url }, record);
}
