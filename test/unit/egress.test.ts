import { describe, expect, it } from "vitest";
import { addressRefusal, egressRefusal, isPrivateAddress } from "../../src/proxy/egress.js";
import type { EgressPolicy } from "../../src/config/config.js";
import { EgressDenied, chooseAddress, pinnedLookup, resolveAllowed } from "../../src/proxy/pinned-lookup.js";
import type { ResolvedAddress } from "../../src/proxy/pinned-lookup.js";

const open: EgressPolicy = { allowHosts: [], denyHosts: [], allowPorts: [], denyPrivate: false };

describe("egress policy", () => {
  it.each([
    ["10.1.2.3", true],
    ["172.20.0.1", true],
    ["192.168.1.1", true],
    ["127.0.0.1", true],
    ["169.254.169.254", true],
    ["::1", true],
    ["fd00::1", true],
    ["fe80::1", true],
    ["::ffff:10.0.0.1", true],
    ["8.8.8.8", false],
    ["2001:4860:4860::8888", false],
    ["example.com", false],
  ])("%s private: %s", (address, priv) => {
    expect(isPrivateAddress(address)).toBe(priv);
  });

  // Every special-purpose range (RFC 6890 and the IANA registries), as ipaddr.js classifies it.
  it.each([
    // IPv4
    ["0.0.0.0", true, "unspecified 0/8"],
    ["0.1.2.3", true, "this network 0/8"],
    ["100.64.0.1", true, "CGNAT 100.64/10"],
    ["100.127.255.254", true, "CGNAT, top"],
    ["100.128.0.1", false, "just past CGNAT"],
    ["224.0.0.251", true, "multicast"],
    ["239.255.255.250", true, "multicast, SSDP"],
    ["255.255.255.255", true, "broadcast"],
    ["240.0.0.1", true, "reserved 240/4"],
    ["192.0.0.8", true, "IETF protocol assignments 192.0.0/24"],
    ["192.0.2.1", true, "TEST-NET-1"],
    ["198.51.100.7", true, "TEST-NET-2"],
    ["203.0.113.9", true, "TEST-NET-3"],
    ["198.18.0.1", true, "benchmarking 198.18/15"],
    ["172.31.255.255", true, "private 172.16/12, top"],
    ["172.32.0.1", false, "just past 172.16/12"],
    ["192.31.196.1", false, "AS112 anycast (public)"],
    ["1.1.1.1", false, "public"],
    // IPv6
    ["::", true, "unspecified"],
    ["::1", true, "loopback"],
    ["0:0:0:0:0:0:0:1", true, "loopback, long form"],
    ["fe80::1", true, "link-local"],
    ["fe80::1%eth0", true, "link-local with a zone"],
    ["fc00::1", true, "unique-local fc00::/7"],
    ["fd12:3456::1", true, "unique-local"],
    ["fec0::1", true, "deprecated site-local"],
    ["ff02::1", true, "multicast"],
    ["2001:db8::1", true, "documentation"],
    ["100::1", true, "discard-only 100::/64"],
    ["2001:2::1", true, "benchmarking"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", true, "Teredo 2001::/32"],
    ["2001:20::1", true, "ORCHIDv2"],
    ["::ffff:127.0.0.1", true, "IPv4-mapped loopback"],
    ["::ffff:7f00:1", true, "IPv4-mapped loopback, hex"],
    ["::ffff:169.254.169.254", true, "IPv4-mapped metadata"],
    ["::ffff:8.8.8.8", false, "IPv4-mapped public"],
    ["::ffff:0:a00:1", true, "IPv4-translated 10.0.0.1"],
    ["64:ff9b::7f00:1", true, "NAT64 of 127.0.0.1"],
    ["64:ff9b::a9fe:a9fe", true, "NAT64 of 169.254.169.254"],
    ["64:ff9b::808:808", false, "NAT64 of 8.8.8.8"],
    ["64:ff9b:1::808:808", true, "local-use NAT64 64:ff9b:1::/48"],
    ["2002:7f00:1::1", true, "6to4 of 127.0.0.1"],
    ["2002:c0a8:101::1", true, "6to4 of 192.168.1.1"],
    ["2002:808:808::1", false, "6to4 of 8.8.8.8"],
    ["2606:4700:4700::1111", false, "public"],
    // Not literals: judged by name elsewhere, never here (ipaddr.js alone would read these).
    ["127.1", false, "short form (not a strict literal)"],
    ["2130706433", false, "integer form"],
  ])("%s denied: %s (%s)", (address, denied) => {
    expect(isPrivateAddress(address)).toBe(denied);
  });

  it.each<[string, EgressPolicy, string, number, RegExp | null]>([
    ["open policy allows anything", open, "example.com", 443, null],
    ["deny list by glob", { ...open, denyHosts: ["*.blocked.test"] }, "api.blocked.test", 443, /deny_hosts/],
    [
      "deny glob does not leak to other domains",
      { ...open, denyHosts: ["*.blocked.test"] },
      "blocked.test.example",
      443,
      null,
    ],
    ["allow list", { ...open, allowHosts: ["*.stoka.space"] }, "evil.example", 443, /allow_hosts/],
    ["allow list match", { ...open, allowHosts: ["*.stoka.space"] }, "cdn.stoka.space", 443, null],
    ["ports", { ...open, allowPorts: [443] }, "example.com", 22, /allow_ports/],
    ["private literal", { ...open, denyPrivate: true }, "10.0.0.5", 443, /private/],
    ["localhost by name", { ...open, denyPrivate: true }, "localhost", 443, /private/],
  ])("%s", (_name, policy, host, port, expected) => {
    const r = egressRefusal(policy, host, port);
    if (expected === null) expect(r).toBeNull();
    else expect(r).toMatch(expected);
  });

  it("a name resolving to a private address is refused after DNS", () => {
    expect(addressRefusal({ ...open, denyPrivate: true }, "127.0.0.1")).toMatch(/private/);
    expect(addressRefusal(open, "127.0.0.1")).toBeNull();
  });

  describe("deny_hosts in every spelling of the name", () => {
    const policy: EgressPolicy = {
      ...open,
      denyHosts: ["evil.example", "*.evil.example", "Bücher.Example.", "*.XN--BCHER-KVA.example"],
    };
    it.each([
      ["evil.example", true],
      ["evil.example.", true],
      ["EVIL.EXAMPLE", true],
      ["Evil.Example.", true],
      ["www.evil.example.", true],
      ["WWW.EVIL.EXAMPLE.", true],
      ["a.b.evil.example", false], // `*` stays within one label
      ["bücher.example", true],
      ["xn--bcher-kva.example", true],
      ["xn--bcher-kva.example.", true],
      ["cdn.bücher.example", true],
      ["notevil.example", false],
      ["evil.example.com", false],
    ])("%s denied: %s", (host, denied) => {
      const r = egressRefusal(policy, host, 443);
      if (denied) expect(r).toMatch(/deny_hosts/);
      else expect(r).toBeNull();
    });

    it("allow_hosts compares the same way, and a host that does not normalise is refused", () => {
      const allow: EgressPolicy = { ...open, allowHosts: ["*.stoka.space"] };
      expect(egressRefusal(allow, "CDN.Stoka.Space.", 443)).toBeNull();
      expect(egressRefusal(allow, "evil.example.", 443)).toMatch(/allow_hosts/);
      expect(egressRefusal(open, "evil.example..", 443)).toMatch(/not a host name/);
      expect(egressRefusal(open, "ev%69l.example", 443)).toMatch(/not a host name/);
    });

    it.each(["127.1", "0x7f.0.0.1", "2130706433", "LOCALHOST.", "foo.localhost", "[::ffff:127.0.0.1]"])(
      "%s is a private target by name when deny_private is on",
      (host) => {
        expect(egressRefusal({ ...open, denyPrivate: true }, host, 80)).toMatch(/private/);
      },
    );
  });

  describe("the address after DNS is checked and pinned", () => {
    const strict: EgressPolicy = { ...open, denyPrivate: true };
    const v4 = (address: string): ResolvedAddress => ({ address, family: 4 });
    it.each<[string, ResolvedAddress[], string | null]>([
      ["public only", [v4("93.184.216.34")], "93.184.216.34"],
      ["loopback only", [v4("127.0.0.1")], null],
      [
        "private first, public second: the public one",
        [v4("10.0.0.1"), v4("93.184.216.34")],
        "93.184.216.34",
      ],
      ["mapped loopback", [{ address: "::ffff:127.0.0.1", family: 6 }], null],
      ["every address private", [v4("127.0.0.1"), v4("192.168.1.1")], null],
    ])("%s", (_name, addresses, chosen) => {
      const c = chooseAddress(strict, "name.example", addresses);
      if (chosen === null) expect(c).toMatchObject({ ok: false, denied: true });
      else expect(c).toEqual({ ok: true, address: v4(chosen) });
    });

    it("no address at all is a DNS failure, not a denial", () => {
      expect(chooseAddress(strict, "name.example", [])).toMatchObject({ ok: false, denied: false });
    });

    it("resolves once and hands the agent only the checked address", async () => {
      let lookups = 0;
      const resolve = async () => {
        lookups += 1;
        return [v4("127.0.0.1"), v4("93.184.216.34")];
      };
      const lookup = pinnedLookup(strict, resolve);
      const one = await new Promise<unknown[]>((ok) => lookup("rebind.example", {}, (...args) => ok(args)));
      expect(one).toEqual([null, "93.184.216.34", 4]);
      const all = await new Promise<unknown[]>((ok) =>
        lookup("rebind.example", { all: true }, (...args) => ok(args)),
      );
      expect(all).toEqual([null, [v4("93.184.216.34")]]);
      expect(lookups).toBe(2);
      await expect(
        resolveAllowed(strict, async () => [v4("127.0.0.1")], "rebind.example"),
      ).rejects.toBeInstanceOf(EgressDenied);
      // IP literals are judged as they are, never resolved.
      await expect(resolveAllowed(open, resolve, "127.0.0.1")).resolves.toEqual(v4("127.0.0.1"));
    });
  });
});
