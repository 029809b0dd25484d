import { describe, expect, it } from "vitest";
import { parseRequestTarget } from "../../src/http/request-target.js";
import { upstreamUrl } from "../../src/http/upstream-url.js";

describe("request targets (RFC 9112 §3.2)", () => {
  it.each([
    ["/v1/store", { form: "origin", path: "/v1/store" }],
    ["/v1/retrieve/my%2Fkey", { form: "origin", path: "/v1/retrieve/my%2Fkey" }],
    ["/v1/retrieve/dir/sub/key?x=1", { form: "origin", path: "/v1/retrieve/dir/sub/key?x=1" }],
    ["/v1/object/a..b", { form: "origin", path: "/v1/object/a..b" }],
    ["/v1/object/.hidden", { form: "origin", path: "/v1/object/.hidden" }],
    ["/q?next=//other/x&up=../..", { form: "origin", path: "/q?next=//other/x&up=../.." }],
    [
      "http://test.api.stoka.space/v1/store",
      { form: "absolute", scheme: "http", host: "test.api.stoka.space", port: 80, path: "/v1/store" },
    ],
    [
      "HTTPS://Test.Api.Stoka.Space.:8443",
      { form: "absolute", scheme: "https", host: "test.api.stoka.space", port: 8443, path: "/" },
    ],
    ["http://h?x=1", { form: "absolute", scheme: "http", host: "h", port: 80, path: "/?x=1" }],
    ["http://[::1]:8080/x", { form: "absolute", scheme: "http", host: "::1", port: 8080, path: "/x" }],
    // One spelling of the path (RFC 3986 §6.2.2): unreserved escapes decoded, others upper-cased.
    ["/v1/%73tore", { form: "origin", path: "/v1/store" }],
    ["/%76%31/%73%74%6F%72%65", { form: "origin", path: "/v1/store" }],
    ["/v1/retrieve/a%2db%5F%7e%2E", { form: "origin", path: "/v1/retrieve/a-b_~." }],
    ["/v1/retrieve/my%2fkey", { form: "origin", path: "/v1/retrieve/my%2Fkey" }],
    ["/v1/retrieve/%c3%a9", { form: "origin", path: "/v1/retrieve/%C3%A9" }],
    ["/q?x=%73&y=100%", { form: "origin", path: "/q?x=%73&y=100%" }],
    [
      "http://h/v1/%72etrieve/k?a=%2f",
      { form: "absolute", scheme: "http", host: "h", port: 80, path: "/v1/retrieve/k?a=%2f" },
    ],
  ])("%s is served", (raw, target) => {
    expect(parseRequestTarget(raw)).toEqual({ ok: true, target });
  });

  it.each([
    ["//attacker:9999/v1/store", /starts with \/\//],
    ["http://test.api.stoka.space//attacker:9999/v1/store", /starts with \/\//],
    ["/.//attacker:9999/v1/store", /dot-segments/],
    ["/x/..//attacker/v1/store", /dot-segments/],
    ["/v1/%2e%2e/store", /dot-segments/],
    ["/v1/%2E./store", /dot-segments/],
    ["/v1/.", /dot-segments/],
    ["/v1/object/a%2F..%2Fb", /dot-segments/],
    ["/v1/object/a%5c..", /dot-segments/],
    ["/v1\\store", /backslash/],
    ["/v1/store#frag", /fragment/],
    ["/v1/st\x01ore", /control/],
    ["/v1/st ore", /control/],
    ["/v1/\u00e9", /non-ASCII/],
    ["v1/store", /must start with/],
    ["*", /asterisk/],
    ["ftp://h/x", /cannot proxy ftp/],
    ["http:/h/x", /absolute-form target is http:\/\/host/],
    ["http://user@h/x", /userinfo/],
    ["http://test.api.stoka.space@attacker:9999/x", /userinfo/],
    ["http:///x", /host: the host is empty/],
    ["http://h:/x", /port/],
    ["http://h:99999/x", /out of range/],
    ["http://evil.example../x", /not a valid host/],
    ["http://ev%69l.example/x", /not a valid host/],
    ["/v1/retrieve/%zz", /not followed by two hex digits/],
    ["/v1/retrieve/%4", /not followed by two hex digits/],
    ["/v1/retrieve/a%", /not followed by two hex digits/],
    ["http://h/a%g0", /not followed by two hex digits/],
  ])("%j is refused (%s)", (raw, reason) => {
    const r = parseRequestTarget(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });
});

describe("upstream URLs take the host from the origin and the path as a path", () => {
  const origin = new URL("https://stoka.internal:8443");
  it.each([
    ["/v1/store", "", "https://stoka.internal:8443/v1/store"],
    ["/v1/object/my%2Fkey?x=1", "", "https://stoka.internal:8443/v1/object/my%2Fkey?x=1"],
    ["/v1/store", "/api", "https://stoka.internal:8443/api/v1/store"],
    // Never checked paths, to show the builder alone cannot be steered to another host:
    ["//attacker:9999/v1/store", "", "https://stoka.internal:8443//attacker:9999/v1/store"],
    ['/a"b<c>', "", "https://stoka.internal:8443/a%22b%3Cc%3E"],
  ])("%s under %j → %s", (path, base, href) => {
    const url = upstreamUrl(origin, path, base);
    expect(url.href).toBe(href);
    expect(url.origin).toBe(origin.origin);
  });
});
