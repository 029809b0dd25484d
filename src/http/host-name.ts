import { isIP } from "node:net";
import { domainToASCII } from "node:url";

/**
 * One spelling per host, for every policy that compares hosts (paid hosts, egress allow/deny,
 * budgets, loop detection, CONNECT), so that no spelling of a name slips past a rule written in
 * another:
 *
 *   EVIL.Example.  → evil.example           lower case, one trailing dot dropped (RFC 1034 §3.1:
 *                                           the absolute name names the same host)
 *   bücher.example → xn--bcher-kva.example  IDNA to ASCII, as URL parsing does (UTS #46)
 *   127.1, 0x7f.0.0.1, 2130706433 → 127.0.0.1   IPv4 forms, read as WHATWG URL parsing reads them
 *   [0:0::1], ::1 → ::1                     IPv6 in canonical form, without brackets
 *
 * Anything else that a URL parser would silently rewrite (percent-escapes, `/`, `\`, `@`, a
 * zone id, an empty label) does not normalise: null, and the caller refuses the request. Pure.
 *
 * @example normaliseHost("WWW.Evil.Example.") // "www.evil.example"
 */
const NOT_IN_A_NAME = /[^\p{L}\p{N}\p{M}._-]/u;
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,62})?$/;

/**
 * Hosts seen lately, normalised: every request asks for its host several times (target, Host
 * header, paid hosts, egress), and the answer never changes. Bounded: emptied when full, and
 * only inputs of at most 255 characters are kept, so a flood of names costs at most
 * MEMO_SIZE × 255 characters.
 */
const MEMO_SIZE = 1024;
const memo = new Map<string, string | null>();

export function normaliseHost(input: string): string | null {
  if (input.length > 255) return null; // refused for length, and never kept
  const known = memo.get(input);
  if (known !== undefined) return known;
  const host = normaliseHostUncached(input);
  if (memo.size >= MEMO_SIZE) memo.clear();
  // The key is copied: the input is often a slice of a request target or header that may be
  // large (V8 keeps a slice's whole parent alive), and the memo outlives the request.
  memo.set(ownCopy(input), host);
  return host;
}

/** A string that shares no storage with `s` but for at most one character's worth. */
function ownCopy(s: string): string {
  return ` ${s}`.slice(1);
}

function normaliseHostUncached(input: string): string | null {
  if (input.length === 0 || input.length > 255) return null;
  if (input.startsWith("[") || input.endsWith("]")) {
    if (!(input.startsWith("[") && input.endsWith("]"))) return null;
    return canonicalIPv6(input.slice(1, -1));
  }
  if (input.includes(":")) return canonicalIPv6(input);
  if (NOT_IN_A_NAME.test(input)) return null;
  let name = input.toLowerCase();
  if (name.endsWith(".")) name = name.slice(0, -1);
  const ascii = domainToASCII(name);
  if (ascii === "" || ascii.length > 253) return null;
  if (isIP(ascii) === 4) return ascii;
  return ascii.split(".").every((label) => LABEL.test(label)) ? ascii : null;
}

function canonicalIPv6(text: string): string | null {
  if (isIP(text) !== 6 || text.includes("%")) return null;
  try {
    return new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
}

/** The host as it is written in a URL or a Host header: IPv6 in brackets. */
export function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/**
 * A host pattern from the config (`*.example.com`, `Bücher.example.`) in the same spelling as
 * normalised hosts; labels with `*` are only lower-cased.
 */
export function normaliseHostPattern(pattern: string): string {
  if (!pattern.includes("*")) return normaliseHost(pattern) ?? pattern.toLowerCase();
  let p = pattern.toLowerCase();
  if (p.endsWith(".")) p = p.slice(0, -1);
  return p
    .split(".")
    .map((label) => (label.includes("*") ? label : domainToASCII(label) || label))
    .join(".");
}

export type ParsedAuthority =
  { ok: true; host: string; port: number | undefined } | { ok: false; reason: string };

/**
 * `host`, `host:port`, `[v6]` or `[v6]:port` (RFC 9110 §4.2.3 authority without userinfo), the
 * host normalised. A port, when present, is 1–65535 in decimal.
 */
export function parseAuthority(text: string): ParsedAuthority {
  if (text.includes("@")) return { ok: false, reason: "userinfo (user@host) is not allowed" };
  const m = /^(\[[^\]]*\]|[^:[\]]*)(?::([^:]*))?$/.exec(text);
  if (!m) {
    const reason = text.startsWith("[")
      ? "not [IPv6]:port (a bracket is not closed, or something follows it)"
      : text.split(":").length > 2
        ? "write an IPv6 address in brackets: [::1]:443"
        : "not host[:port]";
    return { ok: false, reason };
  }
  const rawHost = m[1] as string;
  if (rawHost === "") return { ok: false, reason: "the host is empty" };
  const host = normaliseHost(rawHost);
  if (host === null) return { ok: false, reason: `${JSON.stringify(rawHost)} is not a valid host name` };
  if (m[2] === undefined) return { ok: true, host, port: undefined };
  if (!/^[0-9]{1,5}$/.test(m[2]))
    return { ok: false, reason: `port ${JSON.stringify(m[2])} is not a number` };
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return { ok: false, reason: `port ${port} is out of range 1-65535` };
  return { ok: true, host, port };
}
