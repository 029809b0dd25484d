import { parseAuthority } from "./host-name.js";

/**
 * The request target (RFC 9112 §3.2), checked before anything is sent anywhere. Only two forms
 * are served: origin-form (`/path?query`) and absolute-form (`http://host[:port]/path?query`).
 * Anything a URL resolver would read as naming another host or another path is refused:
 *
 *   //other:9999/x     a network-path reference: resolved against a base, it names other:9999
 *   /a/../x, /%2e%2e/  dot-segments: they climb out of the path that budgets and routes matched
 *   /a\b               WHATWG URL parsing reads `\` as `/`
 *   /x#frag            a fragment is never sent (RFC 9110 §4.2.5)
 *   http://u@host/     userinfo (RFC 9110 §4.2.4: a sender must not send it)
 *   control bytes, spaces, non-ASCII (percent-encode them), `*` (asterisk-form)
 *   /a%zz, /a%4        a `%` not followed by two hex digits in the path
 *
 * The `path` returned is the origin-form target as received (or "/" for an empty path), with
 * its path part in one spelling (RFC 3986 §6.2.2): `%73tore` is `store` and `%2f` is `%2F`.
 * Percent-encoded unreserved characters mean the same as the characters, so a server may
 * decode them before routing; budgets, route names and the bytes sent must read the one path
 * that server runs. It is sent as a path, never resolved. Percent-encoded `/` (`my%2Fkey`) and
 * plain `/` inside a path are kept. Pure.
 */
export type RequestTarget =
  | { form: "origin"; path: string }
  | { form: "absolute"; scheme: "http" | "https"; host: string; port: number; path: string };

export type ParsedTarget = { ok: true; target: RequestTarget } | { ok: false; reason: string };

const refuse = (reason: string): ParsedTarget => ({ ok: false, reason });

export function parseRequestTarget(raw: string): ParsedTarget {
  // Visible ASCII only (RFC 9112 §3.2 is ASCII; RFC 3986 §2.1 percent-encodes the rest).
  if (/[^\x21-\x7e]/.test(raw))
    return refuse("the request target has control characters, spaces or non-ASCII bytes");
  if (raw.includes("#")) return refuse("the request target has a fragment (#…)");
  if (raw.includes("\\")) return refuse("the request target has a backslash");
  if (raw.startsWith("/")) {
    const reason = originFormRefusal(raw);
    return reason ? refuse(reason) : { ok: true, target: { form: "origin", path: normalisePath(raw) } };
  }
  if (raw === "*") return refuse("asterisk-form (OPTIONS *) is not proxied");
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(raw)?.[1]?.toLowerCase();
  if (scheme === undefined) return refuse("the request target must start with / or http://");
  if (scheme !== "http" && scheme !== "https") return refuse(`cannot proxy ${scheme}: URLs`);
  const m = /^[a-zA-Z]+:\/\/([^/?]*)(.*)$/.exec(raw);
  if (!m) return refuse(`an absolute-form target is ${scheme}://host[:port]/path`);
  const authority = m[1] as string;
  if (authority.includes("@")) return refuse("the request target has userinfo (user@host)");
  const parsed = parseAuthority(authority);
  if (!parsed.ok) return refuse(`the request target's host: ${parsed.reason}`);
  let path = m[2] as string;
  if (path === "" || path.startsWith("?")) path = `/${path}`;
  const reason = originFormRefusal(path);
  if (reason) return refuse(reason);
  return {
    ok: true,
    target: {
      form: "absolute",
      scheme,
      host: parsed.host,
      port: parsed.port ?? (scheme === "https" ? 443 : 80),
      path: normalisePath(path),
    },
  };
}

/** Why an origin-form target (already visible ASCII, no `#`, no `\`) is ambiguous; null if not. */
function originFormRefusal(target: string): string | null {
  if (!target.startsWith("/")) return "the path must start with /";
  if (target.startsWith("//")) return "the path starts with // (it would name another host)";
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  // Without a dot or a %, no segment can be a dot-segment, however it is split.
  if (!/[.%]/.test(path)) return null;
  if (/%(?![0-9a-fA-F]{2})/.test(path)) return "the path has a % that is not followed by two hex digits";
  for (const segment of path.split("/")) {
    // A segment is a dot-segment also when its dots are percent-encoded, and so is any part of
    // it between encoded slashes, which a server may decode before resolving (RFC 3986 §6.2.2).
    for (const part of segment.split(/%2f|%5c/i)) {
      const dots = part.replace(/%2e/gi, ".");
      if (dots === "." || dots === "..") return "the path has dot-segments (. or ..)";
    }
  }
  return null;
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** Decodes percent-encoded unreserved characters and upper-cases the other escapes, in the path part only. */
function normalisePath(target: string): string {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  if (!path.includes("%")) return target;
  const normal = path.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
  return q < 0 ? normal : `${normal}${target.slice(q)}`;
}
