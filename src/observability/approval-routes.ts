import type { IncomingMessage, ServerResponse } from "node:http";
import type { ApprovalRegistry, PendingApproval } from "../operator/approvals/registry.js";
import { checkAdminToken } from "./admin-auth.js";
import type { AdminRoute } from "./admin.js";

/**
 * The approvals on the admin listener (docs/operations.md, Approvals), behind the admin token
 * exactly like `/payments/*`:
 *
 *   GET  /approvals              the payments waiting in this process (JSON)
 *   POST /approvals/:id/approve  sign and send it
 *   POST /approvals/:id/deny     refuse it (402 approval_denied; the reservation is released)
 *
 * Two ways to carry the token, both of which a page on another site cannot forge (CSRF): the
 * `Authorization: Bearer` header (API, CLI), or a `token` field in a form posted from the
 * status page itself (the operator types it; the page never holds it). A form post is also
 * refused when the browser says it came from another site (`Sec-Fetch-Site`) or names another
 * origin. A form is answered `303` back to the page; the API with JSON.
 */
export interface ApprovalRouteOptions {
  registry: ApprovalRegistry;
  /** The admin token in use (read at each request: a reload may change it). */
  token: () => string | undefined;
  /** Told of every refused attempt (a security event), with the client's address only. */
  onDenied?: (remoteAddress: string) => void;
}

const MAX_BODY = 4096;
const ID = /^\/approvals\/([0-9a-f]{1,64})\/(approve|deny)$/;

/** One pending approval as JSON: snake_case, the amount as atomic digits and USDC text. */
export function approvalJson(p: PendingApproval): Record<string, unknown> {
  return {
    id: p.id,
    payment_id: p.paymentId,
    request_id: p.requestId,
    route: p.route,
    client: p.client,
    method: p.method,
    host: p.host,
    path: p.path,
    amount: p.amount.toString(),
    budgets: p.budgets,
    reasons: p.reasons,
    requested_at: new Date(p.requestedAtMs).toISOString(),
    deadline: new Date(p.deadlineMs).toISOString(),
  };
}

export function approvalRoutes(o: ApprovalRouteOptions): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path !== "/approvals" && !path.startsWith("/approvals/")) return false;
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(body);
      res
        .writeHead(status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(text),
          "cache-control": "no-store",
          ...headers,
        })
        .end(text);
    };
    const form = /^application\/x-www-form-urlencoded\b/i.test(req.headers["content-type"] ?? "");
    const body = req.method === "POST" ? await readBody(req) : "";
    if (body === null) {
      json(413, { error: `the body must be under ${MAX_BODY} bytes`, code: "bad_request" });
      return true;
    }
    req.resume();
    const fields = form ? new URLSearchParams(body) : jsonFields(body);
    const authorization = form ? `Bearer ${fields.get("token") ?? ""}` : req.headers.authorization;
    const auth = checkAdminToken(authorization, o.token());
    if (!auth.ok) {
      if (auth.status === 401) o.onDenied?.(req.socket.remoteAddress ?? "");
      json(
        auth.status,
        { error: auth.error, code: auth.code, hint: auth.hint },
        auth.status === 401 ? { "www-authenticate": 'Bearer realm="stoka-proxy admin"' } : {},
      );
      return true;
    }
    if (form && crossSite(req)) {
      json(403, {
        error: "a form from another site cannot decide approvals",
        code: "admin_unauthorized",
        hint: "use the buttons on this proxy's own status page, or send Authorization: Bearer",
      });
      return true;
    }
    if (path === "/approvals") {
      if (req.method !== "GET") {
        json(405, { error: "use GET /approvals, or POST /approvals/ID/approve|deny" }, { allow: "GET" });
        return true;
      }
      json(200, { pending: o.registry.list().map(approvalJson) });
      return true;
    }
    const m = ID.exec(path);
    if (!m) {
      json(404, { error: "try GET /approvals, POST /approvals/ID/approve or /approvals/ID/deny" });
      return true;
    }
    if (req.method !== "POST") {
      json(405, { error: "use POST to approve or deny" }, { allow: "POST" });
      return true;
    }
    const id = m[1] as string;
    const verb = m[2] as "approve" | "deny";
    const by = form ? "status page" : "admin";
    const decided = o.registry.decide(id, verb === "approve", by, fields.get("reason") ?? "");
    if (!decided) {
      json(404, {
        error: `no payment waits for approval under ${id}`,
        code: "approval_not_found",
        hint: "it was decided already, timed out, or its app left; GET /approvals lists those waiting",
      });
      return true;
    }
    if (form) {
      res.writeHead(303, { location: "/#approvals", "cache-control": "no-store" }).end();
      return true;
    }
    json(200, { id, decision: verb === "approve" ? "approved" : "denied", approval: approvalJson(decided) });
    return true;
  };
}

/** A browser's word that the form came from elsewhere (Fetch Metadata, or an Origin of another host). */
function crossSite(req: IncomingMessage): boolean {
  const site = req.headers["sec-fetch-site"];
  if (site === "cross-site" || site === "same-site") return true;
  const origin = req.headers.origin;
  // The page is served with Referrer-Policy: no-referrer, so a same-origin form may say "null".
  if (origin === undefined || origin === "null") return false;
  try {
    return new URL(origin).host !== req.headers.host;
  } catch {
    return true;
  }
}

function jsonFields(body: string): { get(k: string): string | null } {
  let v: unknown;
  try {
    v = body.trim() === "" ? {} : JSON.parse(body);
  } catch {
    v = {};
  }
  const obj = typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  return { get: (k) => (typeof obj[k] === "string" ? obj[k] : null) };
}

async function readBody(req: IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
