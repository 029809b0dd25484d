import { isIP } from "node:net";
import { describeValue } from "../secrets/redact.js";

/**
 * A proxy that holds a wallet and listens beyond loopback pays for whoever can reach it. That
 * is allowed only with client tokens (`clients:`) or an explicit `allow_anonymous: true`. Pure.
 */

/** 127.0.0.0/8, ::1 (any spelling, also IPv4-mapped) and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "localhost.") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) {
    // The WHATWG URL parser writes IPv6 in its shortest form (RFC 5952), IPv4-mapped as hex.
    const short = new URL(`http://[${h}]/`).hostname.slice(1, -1);
    if (short === "::1") return true;
    const mapped = /^::ffff:([0-9a-f]{1,4}):[0-9a-f]{1,4}$/.exec(short);
    return mapped !== null && parseInt(mapped[1] ?? "0", 16) >> 8 === 127;
  }
  return false;
}

/** Why this listener may not start, or null when it may. */
export function openListenerProblem(
  listenHost: string,
  clients: number,
  allowAnonymous: boolean,
): string | null {
  if (isLoopbackHost(listenHost) || clients > 0 || allowAnonymous) return null;
  return (
    `${describeValue(listenHost)} is reachable from other machines and no client tokens are configured, ` +
    `so the proxy would pay for anyone who can reach it`
  );
}

/**
 * Why the admin listener may not start, or null when it may: beyond loopback, /metrics (what
 * is spent, by whom, on which routes) would be open to anyone who can reach the port, unless a
 * token guards it or `admin.allow_anonymous: true` says that is wanted.
 */
export function openAdminProblem(
  adminHost: string,
  hasMetricsToken: boolean,
  allowAnonymous: boolean,
): string | null {
  if (isLoopbackHost(adminHost) || hasMetricsToken || allowAnonymous) return null;
  return (
    `${describeValue(adminHost)} is reachable from other machines and STOKA_PROXY_METRICS_TOKEN is not set, ` +
    `so anyone who can reach it could read the metrics (spending, clients, routes)`
  );
}
