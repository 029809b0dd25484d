import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/**
 * Hop-by-hop headers are meaningful for one connection only and must not be forwarded
 * (RFC 9110 §7.6.1): those named in Connection, plus the fixed set below and every Proxy-*.
 */
const FIXED = new Set([
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-connection",
]);

/**
 * Returns a copy without hop-by-hop headers (both directions use it), and without any whose
 * name starts with `dropPrefix` when one is given (one pass instead of a second copy).
 */
export function withoutHopByHop<T extends IncomingHttpHeaders | OutgoingHttpHeaders>(
  headers: T,
  dropPrefix?: string,
): T {
  const connection = headers.connection;
  let named: Set<string> | undefined;
  if (connection !== undefined) {
    named = new Set<string>();
    for (const v of Array.isArray(connection) ? connection : [connection]) {
      if (typeof v === "string") for (const token of v.split(",")) named.add(token.trim().toLowerCase());
    }
  }
  const out: Record<string, unknown> = {};
  // for…in without entries(): no array per header on the path every request takes.
  for (const k in headers) {
    if (!Object.hasOwn(headers, k)) continue;
    const v = headers[k];
    if (v === undefined) continue;
    const key = k.toLowerCase();
    if (FIXED.has(key) || named?.has(key) || key.startsWith("proxy-")) continue;
    if (dropPrefix !== undefined && key.startsWith(dropPrefix)) continue;
    out[key] = v;
  }
  return out as T;
}

/** Our own `Via` token: a loop is a request that already carries it (RFC 9110 §7.6.3). */
export function viaToken(instanceId: string): string {
  return `1.1 stoka-proxy-${instanceId}`;
}

export function hasLoop(headers: IncomingHttpHeaders, token: string): boolean {
  const via: unknown = headers.via;
  const values: string[] = Array.isArray(via) ? via.map(String) : via ? [String(via)] : [];
  return values.some((v) => v.split(",").some((part) => part.trim() === token));
}

/** Appends our Via token to the existing chain. */
export function appendVia(headers: IncomingHttpHeaders | OutgoingHttpHeaders, token: string): void {
  const existing = headers.via;
  const list = Array.isArray(existing) ? existing.join(", ") : existing ? String(existing) : "";
  headers.via = list ? `${list}, ${token}` : token;
}
