import { hostForUrl } from "./host-name.js";

/**
 * Characters the URL path and query serialisations leave as they are (RFC 3986 unreserved,
 * sub-delims but `'`, `:`, `@`, `/`, `%`; `?` in a query that is not empty: URL drops an empty
 * one). A checked target (request-target.ts) made only of them serialises to itself.
 */
export const PLAIN_PATH = /^\/[A-Za-z0-9\-._~!$&()*+,;=:@/%]*(?:\?[A-Za-z0-9\-._~!$&()*+,;=:@/%?]+)?$/;

/**
 * The URL a request is sent to: scheme, host and port come from a trusted origin (the paid
 * host's upstream, the gateway upstream, or the egress-checked target), and the request's
 * origin-form path is set as a path — never resolved against a base, so `//other/x` cannot
 * name another host. Whatever the URL's path serialisation percent-encodes (`"`, `<`, `{`, …)
 * is encoded once here; routes, budgets and the bytes on the wire all read the result. Pure.
 *
 * @example upstreamUrl(new URL("https://stoka.internal:8443"), "/v1/object/a%2Fb?x=1")
 *          // https://stoka.internal:8443/v1/object/a%2Fb?x=1
 */
export function upstreamUrl(origin: URL, path: string, basePath = ""): URL {
  let url: URL;
  if (basePath === "" && PLAIN_PATH.test(path)) {
    // Nothing in it the serialisation changes: one parse gives what the two setters give.
    url = new URL(`${origin.origin}${path}`);
  } else {
    url = new URL(origin.origin);
    const q = path.indexOf("?");
    url.pathname = `${basePath}${q < 0 ? path : path.slice(0, q)}`;
    url.search = q < 0 ? "" : path.slice(q);
  }
  // Setting a path can never move the host; if it ever did, nothing must be sent.
  if (url.origin !== origin.origin) throw new Error(`upstream URL left ${origin.origin}`);
  return url;
}

/** `scheme://host:port` for a normalised host (IPv6 bracketed). */
export function originOf(scheme: "http" | "https", host: string, port: number): URL {
  const url = new URL(`${scheme}://placeholder.invalid`);
  url.hostname = hostForUrl(host);
  url.port = String(port);
  // The URL setters ignore a value they cannot parse; a normalised host never is one.
  if (url.hostname !== hostForUrl(host)) throw new Error(`not a host: ${host}`);
  return url;
}
