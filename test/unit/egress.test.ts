import { describe, expect, it } from "vitest";
import { addressRefusal, egressRefusal, isPrivateAddress } from "../../src/proxy/egress.js";
import type { EgressPolicy } from "../../src/proxy/egress.js";

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
});
