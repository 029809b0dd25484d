import type { PaidHost, PaidHostEntry } from "./config.js";
import { normaliseHost, parseAuthority } from "../http/host-name.js";
import { originOf } from "../http/upstream-url.js";

/**
 * Paid hosts (docs/configuration.md, Paid hosts): reading a `paid_hosts[].host`, and which
 * entry a request is for. Pure.
 *
 * Which paid host a request is for, by authority: a
 * `name:port` entry for exactly that port wins over a `name` entry (any port). One function for
 * absolute-form, CONNECT and gateway requests. Pure.
 *
 *   entries: stoka.internal:8443 (A), stoka.internal (B)
 *   stoka.internal:8443 → A    stoka.internal:443 → B    other.internal:8443 → none
 */
export function findPaidHost(
  entries: readonly PaidHostEntry[],
  host: string,
  port: number,
): PaidHostEntry | undefined {
  const name = normaliseHost(host);
  if (name === null) return undefined;
  return (
    entries.find((e) => e.host === name && e.port === port) ??
    entries.find((e) => e.host === name && e.port === undefined)
  );
}

/** Whether `entry` covers a normalised host and port: its one port, or any port. */
export function coversAuthority(entry: PaidHostEntry, host: string, port: number): boolean {
  return entry.host === host && (entry.port === undefined || entry.port === port);
}

/**
 * Every entry that may have served a request sent to `url` (a URL the proxy built, as the
 * ledger keeps it): an entry with an upstream by that upstream's origin, an entry without one by
 * the URL's own authority. Two entries on one upstream both qualify.
 */
export function paidHostsServing(entries: readonly PaidHostEntry[], url: URL): PaidHostEntry[] {
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  return entries.filter((e) =>
    e.upstream ? e.upstream.origin === url.origin : coversAuthority(e, host, port),
  );
}

/**
 * The paid host as this request reaches it: the configured upstream, or else the scheme and
 * port the app used (absolute-form `http://h:8080/…` → `http://h:8080`; CONNECT h:443
 * intercepted → `https://h:443`).
 */
export function servedPaidHost(entry: PaidHostEntry, scheme: "http" | "https", port: number): PaidHost {
  return { ...entry, upstream: entry.upstream ?? originOf(scheme, entry.host, port) };
}

export type ParsedPaidHost =
  { ok: true; host: string; port: number | undefined } | { ok: false; reason: string };

/** A `paid_hosts[].host` value: `name`, `name:port`, `[v6]` or `[v6]:port`; anything else never matches. */
export function parsePaidHostAuthority(text: string): ParsedPaidHost {
  if (text.trim() === "") return { ok: false, reason: "the host is empty" };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    return {
      ok: false,
      reason: `${JSON.stringify(text)} is a URL, not a host: write host or host:port (e.g. stoka.internal:8443) and put the URL in upstream`,
    };
  }
  if (/[/?#]/.test(text))
    return { ok: false, reason: `${JSON.stringify(text)} has a path; give only host or host:port` };
  const parsed = parseAuthority(text);
  if (!parsed.ok) return { ok: false, reason: `${JSON.stringify(text)}: ${parsed.reason}` };
  return parsed;
}

/** `host` or `host:port` as written in messages and docs. */
export function paidHostLabel(entry: Pick<PaidHostEntry, "host" | "port">): string {
  const host = entry.host.includes(":") ? `[${entry.host}]` : entry.host;
  return entry.port === undefined ? host : `${host}:${entry.port}`;
}
