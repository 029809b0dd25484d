import { describe, expect, it } from "vitest";
import { appendVia, hasLoop, viaToken, withoutHopByHop } from "../../src/http/hop-by-hop.js";
import { responseHeaders } from "../../src/proxy/respond.js";
import { routeName } from "../../src/stoka/route-names.js";

describe("hop-by-hop headers (RFC 9110 §7.6.1)", () => {
  it("drops the fixed set, Proxy-*, and whatever Connection names", () => {
    const out = withoutHopByHop({
      connection: "keep-alive, X-Custom",
      "x-custom": "1",
      "keep-alive": "timeout=5",
      te: "trailers",
      trailer: "x",
      "transfer-encoding": "chunked",
      upgrade: "h2c",
      "proxy-authorization": "Basic x",
      "proxy-connection": "keep-alive",
      "x-stoka-key": "k",
      authorization: "Stellar G:x:y",
    });
    expect(out).toEqual({ "x-stoka-key": "k", authorization: "Stellar G:x:y" });
  });

  it("Via: appended, and our own token means a loop", () => {
    const token = viaToken("abcd1234");
    const h: Record<string, string> = { via: "1.1 other" };
    appendVia(h, token);
    expect(h.via).toBe(`1.1 other, ${token}`);
    expect(hasLoop(h, token)).toBe(true);
    expect(hasLoop({ via: "1.1 other" }, token)).toBe(false);
    expect(hasLoop({ via: `1.1 stoka-proxy-ffff0000` }, token)).toBe(false);
  });
});

describe("route names are bounded", () => {
  it.each([
    ["POST", "/v1/store", "store"],
    ["PUT", "/v1/object/a%2Fb", "update"],
    ["DELETE", "/v1/object/a", "delete"],
    ["GET", "/v1/retrieve/a/b?x=1", "retrieve"],
    ["GET", "/v1/me/usage?days=3", "usage"],
    ["POST", "/v1/queue/GABC/topic/push", "queue_push"],
    ["POST", "/v1/queue/topic/pop", "queue_pop"],
    ["POST", "/v1/queue/topic/ack/r1", "queue_ack"],
    ["GET", "/.well-known/stoka", "manifest"],
    ["GET", "/etc/passwd", "other"],
  ])("%s %s → %s", (method, path, name) => {
    expect(routeName(method, path)).toBe(name);
  });
});

describe("response headers for the app (src/proxy/respond.ts)", () => {
  it("drops hop-by-hop and upstream-written X-Stoka-Proxy-* fields, appends Via, and lets ours win", () => {
    const upstream = {
      "content-type": "text/plain",
      connection: "x-secret, close",
      "x-secret": "s",
      "keep-alive": "timeout=5",
      "proxy-authenticate": "Basic",
      "x-stoka-proxy-paid": "forged",
      "x-stoka-proxy-tx": "forged",
      "x-stoka-price": "100",
      "set-cookie": ["a=1", "b=2"],
      via: "1.1 upstream",
      "x-request-id": "theirs",
    };
    const out = responseHeaders(
      upstream,
      { "x-request-id": "ours", "x-stoka-proxy-paid": "0.0001 USDC" },
      "1.1 us",
    );
    expect(out).toEqual({
      "content-type": "text/plain",
      "x-stoka-price": "100",
      "set-cookie": ["a=1", "b=2"],
      via: "1.1 upstream, 1.1 us",
      "x-request-id": "ours",
      "x-stoka-proxy-paid": "0.0001 USDC",
    });
    // A copy: the upstream's object is left as it was.
    expect(upstream["x-stoka-proxy-paid"]).toBe("forged");
  });

  it("drops a prefix only when asked", () => {
    expect(withoutHopByHop({ "x-stoka-proxy-a": "1", b: "2" })).toEqual({ "x-stoka-proxy-a": "1", b: "2" });
    expect(withoutHopByHop({ "x-stoka-proxy-a": "1", b: "2" }, "x-stoka-proxy-")).toEqual({ b: "2" });
  });
});
