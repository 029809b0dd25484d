import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { passOrigin, upstreamPath } from "../../src/http/pass-origin.js";
import { parseRequestTarget } from "../../src/http/request-target.js";
import { upstreamUrl } from "../../src/http/upstream-url.js";

/** What was sent before: the path set on the origin's URL through its setters. */
function viaSetters(origin: string, path: string, basePath = ""): URL {
  const url = new URL(new URL(origin).origin);
  const q = path.indexOf("?");
  url.pathname = `${basePath}${q < 0 ? path : path.slice(0, q)}`;
  url.search = q < 0 ? "" : path.slice(q);
  return url;
}
function viaUrl(origin: string, path: string): string {
  const url = viaSetters(origin, path);
  return `${url.pathname}${url.search}`;
}

describe("pass-through targets without a URL per request", () => {
  it.each([
    ["http", "example.com", 80, "example.com", "http://example.com"],
    ["https", "example.com", 443, "example.com", "https://example.com"],
    ["http", "example.com", 8080, "example.com:8080", "http://example.com:8080"],
    ["https", "::1", 8443, "[::1]:8443", "https://[::1]:8443"],
    ["http", "127.0.0.1", 80, "127.0.0.1", "http://127.0.0.1"],
  ] as const)("%s %s:%d → Host %s", (scheme, host, port, authority, origin) => {
    const o = passOrigin(scheme, host, port);
    expect(o).toMatchObject({ secure: scheme === "https", hostname: host, port, authority, origin });
    expect(Object.isFrozen(o)).toBe(true);
  });

  it("sends the same path bytes as the URL serialisation did, for every checked target", () => {
    const o = passOrigin("http", "example.com", 80);
    const chars = fc.constantFrom(
      ..."abcXYZ019-._~!$&'()*+,;=:@/%?\"<>`{}^|[]".split(""),
      "%2F",
      "%41",
      "%e9",
    );
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 30 }), (parts) => {
        const parsed = parseRequestTarget(`/${parts.join("")}`);
        if (!parsed.ok) return;
        const path = parsed.target.path;
        expect(upstreamPath(o, path)).toBe(viaUrl(o.origin, path));
        // The paid path's URL too (one parse for plain targets): the same URL as the setters give.
        expect(upstreamUrl(new URL("https://stoka.internal:8443"), path).href).toBe(
          viaSetters("https://stoka.internal:8443", path).href,
        );
        expect(upstreamUrl(new URL("https://stoka.internal"), path, "/base").href).toBe(
          viaSetters("https://stoka.internal", path, "/base").href,
        );
      }),
      { numRuns: 3000 },
    );
  });

  it.each(['/a"b', "/{x}", "/a?b='c'", "/a?q=<x>", "/`"])("encodes %s as the URL did", (path) => {
    const o = passOrigin("https", "example.com", 443);
    expect(upstreamPath(o, path)).toBe(viaUrl(o.origin, path));
    expect(upstreamPath(o, path)).not.toBe(path);
  });
});
