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
