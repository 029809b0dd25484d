import type { OutgoingHttpHeaders } from "node:http";

/**
 * stoka quotes a retrieve or a queue pop exactly only when it knows whose object or mailbox it
 * is (`X-Stoka-Owner: G…`, docs/wire-protocol.md, Routes). The proxy names its wallet when the
 * app did not. `headers` is the request's own copy (proxy/prepare.ts) and is set in place: a
 * copy per retrieve was a measurable share of the paid host's path.
 */
const OWNER_QUOTED_ROUTES = new Set(["retrieve", "queue_pop"]);

export function withOwnerQuote(
  headers: OutgoingHttpHeaders,
  route: string,
  wallet: string | undefined,
): OutgoingHttpHeaders {
  if (!OWNER_QUOTED_ROUTES.has(route) || headers["x-stoka-owner"] !== undefined || !wallet) return headers;
  headers["x-stoka-owner"] = wallet;
  return headers;
}
