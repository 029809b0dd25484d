import { describe, expect, it } from "vitest";
import { resourceElsewhere } from "../../src/x402/resource-host.js";

describe("resourceElsewhere: the x402 v2 resource names the host being paid", () => {
  const hosts = ["api.stoka.space", "stoka.internal"];
  it.each<[string, unknown, RegExp | null]>([
    ["no resource", undefined, null],
    ["a resource without url", { description: "x" }, null],
    ["a url that is not a string", { url: 42 }, null],
    ["this host", { url: "https://api.stoka.space/v1/store" }, null],
    ["this host in another spelling", { url: "https://API.Stoka.Space./v1/store" }, null],
    ["the upstream's host", { url: "http://stoka.internal:8080/v1/store" }, null],
    ["another host", { url: "https://evil.example/v1/store" }, /another host \(evil\.example\)/],
    ["a look-alike suffix", { url: "https://api.stoka.space.evil.example/" }, /another host/],
    ["userinfo pretending", { url: "https://api.stoka.space@evil.example/" }, /evil\.example/],
    ["not a URL", { url: "not a url" }, /not a URL/],
  ])("%s", (_name, resource, expected) => {
    const r = resourceElsewhere(resource, hosts);
    if (expected === null) expect(r).toBeNull();
    else expect(r).toMatch(expected);
  });
});
