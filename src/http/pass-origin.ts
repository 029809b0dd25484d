import { PLAIN_PATH, originOf, upstreamUrl } from "./upstream-url.js";

/**
 * Where a pass-through request goes (a host that is not paid), in the pieces `http.request`
 * takes: read once per origin, not rebuilt as a URL per request.
 */
export interface PassOrigin {
  readonly secure: boolean;
  /** For the socket: IPv6 without brackets. */
  readonly hostname: string;
  readonly port: number;
  /** The Host header: `host[:port]`, the port left out when it is the scheme's (as URL.host). */
  readonly authority: string;
  /** `scheme://authority`, for error messages and http-proxy-3's target. */
  readonly origin: string;
}

const MEMO_SIZE = 1024;
const memo = new Map<string, PassOrigin>();

/** A normalised host's origin (bounded memo: emptied when full). Throws on a host that is not one. */
export function passOrigin(scheme: "http" | "https", host: string, port: number): PassOrigin {
  const key = `${scheme} ${host} ${port}`;
  let o = memo.get(key);
  if (o) return o;
  const url = originOf(scheme, host, port);
  o = Object.freeze({
    secure: scheme === "https",
    hostname: host,
    port,
    authority: url.host,
    origin: url.origin,
  });
  if (memo.size >= MEMO_SIZE) memo.clear();
  memo.set(key, o);
  return o;
}

/**
 * The origin-form target sent upstream for `path` (already checked by request-target.ts): as
 * received when it is plain, else upstreamUrl's encoding, so the bytes are the same either way.
 */
export function upstreamPath(origin: PassOrigin, path: string): string {
  if (PLAIN_PATH.test(path)) return path;
  const url = upstreamUrl(new URL(origin.origin), path);
  return `${url.pathname}${url.search}`;
}
