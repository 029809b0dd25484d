import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { renderStatusPage, STATUS_PAGE_CSP } from "../operator/status/render.js";
import type { AdminRoute } from "./admin.js";
import type { StatusSource } from "./status-source.js";
import type { ApprovalView } from "../operator/status/view.js";

/**
 * `GET /` on the admin listener: the operator's status page (docs/operations.md, The status
 * page). With a metrics token set it asks for the same token as /metrics, as a Bearer token or
 * as the password of HTTP Basic (RFC 7617; any user name), so a browser can open it. The page
 * is one self-contained document under a strict CSP, never cached, never framed.
 */
// form-action 'self': the approve/deny buttons post to this origin only (approval-routes.ts).
export const STATUS_CSP = `${STATUS_PAGE_CSP}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'`;

const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": STATUS_CSP,
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
} as const;

function sameSecret(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The admin token, as `Bearer <token>` or as Basic's password. */
export function adminAuthorized(header: string | undefined, token: string): boolean {
  const bearer = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  if (bearer) return sameSecret(bearer[1] as string, token);
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? "");
  if (!basic) return false;
  const decoded = Buffer.from(basic[1] as string, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon >= 0 && sameSecret(decoded.slice(colon + 1), token);
}

export interface StatusRouteOptions {
  source: StatusSource;
  /** The metrics token; none = the page is open on the admin port, like /metrics. */
  token?: string | undefined;
  /** Told of every refused attempt (a security event), with the client's address only. */
  onDenied?: (remoteAddress: string) => void;
  /** The payments waiting for approval now (read at each request, never cached); undefined = no panel. */
  approvals?: () => ApprovalView[] | undefined;
}

export function statusRoutes(o: StatusRouteOptions): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/" && path !== "/status") return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return true;
    }
    if (o.token && !adminAuthorized(req.headers.authorization, o.token)) {
      o.onDenied?.(req.socket.remoteAddress ?? "");
      res
        .writeHead(401, {
          "www-authenticate": 'Basic realm="stoka-proxy status", charset="UTF-8"',
          "content-type": "text/plain; charset=utf-8",
          "cache-control": "no-store",
        })
        .end("the status page needs the admin token (STOKA_PROXY_METRICS_TOKEN) as the password\n");
      return true;
    }
    let body: string;
    try {
      const view = await o.source.view();
      const approvals = o.approvals?.();
      body = renderStatusPage(approvals ? { ...view, approvals } : view);
    } catch {
      // The ledger could not be read; the page says so without the store's own words.
      res
        .writeHead(503, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" })
        .end("the status page cannot read the payment ledger right now; see the proxy's log\n");
      return true;
    }
    res.writeHead(200, { ...PAGE_HEADERS, "content-length": Buffer.byteLength(body) });
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  };
}
