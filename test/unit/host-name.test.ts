import { describe, expect, it } from "vitest";
import { hostForUrl, normaliseHost, normaliseHostPattern, parseAuthority } from "../../src/http/host-name.js";
import { targetsListener } from "../../src/proxy/self-target.js";

describe("host names in one spelling", () => {
  it.each<[string, string | null]>([
    ["example.com", "example.com"],
    ["EXAMPLE.Com", "example.com"],
    ["evil.example.", "evil.example"],
    ["WWW.Evil.Example.", "www.evil.example"],
    ["bücher.example", "xn--bcher-kva.example"],
    ["BÜCHER.example.", "xn--bcher-kva.example"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example"],
    ["ＡＢＣ.com", "abc.com"],
    ["a_b.internal", "a_b.internal"],
    ["127.0.0.1", "127.0.0.1"],
    ["127.1", "127.0.0.1"],
    ["0x7f.0.0.1", "127.0.0.1"],
    ["0177.0.0.1", "127.0.0.1"],
    ["2130706433", "127.0.0.1"],
    ["127.0.0.1.", "127.0.0.1"],
    ["[::1]", "::1"],
    ["::1", "::1"],
    ["[0:0::1]", "::1"],
    ["[::FFFF:127.0.0.1]", "::ffff:7f00:1"],
    // do not normalise: refuse
    ["", null],
    [".", null],
    ["evil.example..", null],
    ["a..b", null],
    [".example", null],
    ["-leading.example", null],
    ["ev%69l.example", null],
    ["a/b", null],
    ["a\\b", null],
    ["a@b", null],
    ["a b", null],
    ["a:80", null],
    ["*.example", null],
    ["[::1", null],
    ["::1]", null],
    ["[fe80::1%25eth0]", null],
    ["[not-v6]", null],
    ["1.2.3.4.5", null],
    ["256.1.1.1", null],
    ["\u00ad.com", null],
    ["x".repeat(64) + ".example", null],
  ])("%j → %j", (input, out) => {
    expect(normaliseHost(input)).toBe(out);
  });

  it("brackets IPv6 for URLs only", () => {
    expect(hostForUrl("::1")).toBe("[::1]");
    expect(hostForUrl("example.com")).toBe("example.com");
  });

  it.each([
    ["*.Example.COM.", "*.example.com"],
    ["*.bücher.example", "*.xn--bcher-kva.example"],
    ["Evil.Example.", "evil.example"],
  ])("pattern %s → %s", (pattern, out) => {
    expect(normaliseHostPattern(pattern)).toBe(out);
  });
});

describe("authorities (host[:port])", () => {
  it.each([
    ["stoka.internal", { ok: true, host: "stoka.internal", port: undefined }],
    ["Stoka.Internal.:8443", { ok: true, host: "stoka.internal", port: 8443 }],
    ["[::1]:8443", { ok: true, host: "::1", port: 8443 }],
    ["[::1]", { ok: true, host: "::1", port: undefined }],
    ["127.1:80", { ok: true, host: "127.0.0.1", port: 80 }],
  ])("%s is accepted", (text, out) => {
    expect(parseAuthority(text)).toEqual(out);
  });

  it.each([
    ["", /empty/],
    [":443", /empty/],
    ["h:", /not a number/],
    ["h:0", /out of range/],
    ["h:65536", /out of range/],
    ["h:+80", /not a number/],
    ["h:80:81", /brackets|host\[:port\]/],
    ["::1:443", /brackets/],
    ["u@h:443", /userinfo/],
    ["h/x:443", /not a valid host name/],
    ["[::1:443", /not \[IPv6\]:port/],
    ["[::1]x:443", /not \[IPv6\]:port/],
  ])("%j is refused (%s)", (text, reason) => {
    const r = parseAuthority(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });
});

describe("loops to the proxy's own listener", () => {
  it.each<[string, number, string, number, boolean]>([
    ["127.0.0.1", 8402, "127.0.0.1", 8402, true],
    ["127.0.0.1", 8402, "127.1", 8402, true],
    ["127.0.0.1", 8402, "LOCALHOST.", 8402, true],
    ["127.0.0.1", 8402, "::1", 8402, true],
    ["127.0.0.1", 8402, "0.0.0.0", 8402, true],
    ["0.0.0.0", 8402, "127.0.0.1", 8402, true],
    ["::", 8402, "[::ffff:127.0.0.1]", 8402, true],
    ["10.0.0.5", 8402, "10.0.0.5", 8402, true],
    ["127.0.0.1", 8402, "127.0.0.1", 8403, false],
    ["10.0.0.5", 8402, "127.0.0.1", 8402, false],
    ["127.0.0.1", 8402, "example.com", 8402, false],
  ])("listener %s:%d, target %s:%d → %s", (address, lport, host, port, loop) => {
    expect(targetsListener({ address, port: lport }, host, port)).toBe(loop);
  });
});
