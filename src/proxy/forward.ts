import type { IncomingMessage, ServerResponse } from "node:http";
import { StokaProxyError } from "../errors.js";
import type { ProxyContext, RequestRecord } from "./context.js";
import { handlePaidHost } from "./paid-host.js";
import type { Passthrough } from "./passthrough.js";
import { egressRefusal } from "./egress.js";
import { sendError } from "./respond.js";
import { routeName } from "./route-names.js";

/**
 * Absolute-form requests from apps that use us as HTTP_PROXY (and requests inside tunnels,
 * which arrive here with their absolute URL rebuilt):
 *
 *   app ──GET http://host/path──▶ proxy ─┬─ paid host ──▶ paid-host (wallet auth, or pay and retry) ──▶ its upstream
 *                                        └─ other host ─▶ passthrough (stream, untouched) ────▶ host
 */
export async function handleForward(
  ctx: ProxyContext,
  passthrough: Passthrough,
  req: IncomingMessage,
  res: ServerResponse,
  absolute: URL,
  record: RequestRecord,
): Promise<void> {
  if (absolute.protocol !== "http:" && absolute.protocol !== "https:") {
    return sendError(
      res,
      new StokaProxyError("bad_request", `cannot proxy ${absolute.protocol} URLs`, "use http:// or https://"),
    );
  }
  const host = absolute.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  record.host = host;
  record.route = routeName(req.method ?? "GET", absolute.pathname);
  const paid = ctx.paidHost(host);
  if (paid) {
    // A paid host is reached at its configured upstream, whatever scheme the app used.
    const url = new URL(`${absolute.pathname}${absolute.search}`, paid.upstream);
    return handlePaidHost(ctx, req, res, { host: paid, url }, record);
  }
  record.route = "other";
  const refusal = egressRefusal(
    ctx.config.egress,
    host,
    Number(absolute.port || (absolute.protocol === "https:" ? 443 : 80)),
  );
  if (refusal)
    return sendError(
      res,
      new StokaProxyError("egress_denied", refusal, "ask the operator to allow this host in egress"),
    );
  req.url = `${absolute.pathname}${absolute.search}`;
  passthrough.forward(req, res, new URL(absolute.origin));
}

/** Origin-form requests on the listener: the team-gateway mode, to the configured stoka. */
export async function handleGateway(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
  record: RequestRecord,
): Promise<void> {
  const base = ctx.config.gatewayUpstream;
  const incoming = new URL(req.url ?? "/", "http://gateway.invalid");
  const basePath = base.pathname.replace(/\/$/, "");
  const url = new URL(`${basePath}${incoming.pathname}${incoming.search}`, base.origin);
  const host = base.hostname.toLowerCase();
  record.host = host;
  record.route = routeName(req.method ?? "GET", incoming.pathname);
  const paid = ctx.paidHost(host) ?? { host, upstream: base, payTo: [] };
  return handlePaidHost(ctx, req, res, { host: paid, url }, record);
}
