import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { globMatches } from "../parsing/glob.js";
import { normaliseHost, normaliseHostPattern } from "../http/host-name.js";
import type { EgressPolicy } from "../config/config.js";

/**
 * Which hosts blind tunnels (and plain forwards to non-paid hosts) may reach. Default: allow
 * all, except private and loopback targets when the listener is reachable from elsewhere (an
 * open proxy must not become a way into the local network). Host patterns are globs (`*`
 * within a label run, e.g. `*.example.com`). Hosts and patterns are compared in one spelling
 * (http/host-name.ts), so `EVIL.example.` meets a rule for `evil.example`. Pure; the address check
 * after DNS is `addressRefusal`, applied by pinned-lookup.ts on the address actually connected.
 */

/**
 * Address classes (ipaddr.js's IANA special-purpose tables, RFC 6890) an open proxy must not
 * reach: this machine, its networks, and what no host on the Internet is. Unicast, and the
 * public anycast services (AS112, AMT), are allowed.
 */
const DENIED_V4 = new Set([
  "unspecified", // 0.0.0.0/8
  "broadcast",
  "multicast", // 224/4
  "linkLocal", // 169.254/16, cloud metadata
  "loopback", // 127/8
  "carrierGradeNat", // 100.64/10
  "private", // 10/8, 172.16/12, 192.168/16
  "reserved", // 192.0.0/24, documentation, 198.18/15 benchmarking, 240/4
]);
const ALLOWED_V6 = new Set(["unicast", "as112v6", "amt"]);

/** The IPv4 address in the low 32 bits of an IPv6 address. */
const lowIPv4 = (v6: ipaddr.IPv6) => new ipaddr.IPv4(v6.toByteArray().slice(12, 16));

function deniedRange(addr: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  if (addr.kind() === "ipv4") return DENIED_V4.has(addr.range());
  const v6 = addr as ipaddr.IPv6;
  switch (v6.range()) {
    // These carry an IPv4 address, which is what is really reached: judged as that address.
    case "ipv4Mapped": // ::ffff:0:0/96
    case "rfc6145": // ::ffff:0:0:0/96, IPv4-translated (RFC 6145)
      return deniedRange(lowIPv4(v6));
    case "rfc6052": {
      // 64:ff9b::/96 (NAT64, RFC 6052): the embedded address; the local-use 64:ff9b:1::/48
      // (RFC 8215) is a site's own translator, so denied.
      if (!v6.match(ipaddr.IPv6.parse("64:ff9b::"), 96)) return true;
      return deniedRange(lowIPv4(v6));
    }
    case "6to4": // 2002:AABB:CCDD::/48 relays to AA.BB.CC.DD (RFC 3056)
      return deniedRange(new ipaddr.IPv4(v6.toByteArray().slice(2, 6)));
    default:
      // Teredo (2001::/32), loopback, link-local, unique-local, multicast, documentation,
      // discard, site-local, ORCHID, benchmarking, segment routing, …
      return !ALLOWED_V6.has(v6.range());
  }
}

const hostGlob = (pattern: string, host: string) =>
  globMatches(normaliseHostPattern(pattern).replaceAll(".", "/"), host.replaceAll(".", "/"));

export function isPrivateAddress(address: string): boolean {
  // Only strict literals (Node's reading): ipaddr.js would also take "127.1" or "0x7f.1".
  if (isIP(address) === 0) return false;
  return deniedRange(ipaddr.parse(address));
}

/** The decision on the name and port; null = allowed (the resolved address is checked too). */
export function egressRefusal(policy: EgressPolicy, rawHost: string, port: number): string | null {
  const host = normaliseHost(rawHost);
  if (host === null) return `${JSON.stringify(rawHost)} is not a host name egress rules can judge`;
  if (policy.denyHosts.some((p) => hostGlob(p, host)))
    return `egress to ${host} is denied by egress.deny_hosts`;
  if (policy.allowHosts.length > 0 && !policy.allowHosts.some((p) => hostGlob(p, host))) {
    return `egress to ${host} is not in egress.allow_hosts`;
  }
  if (policy.allowPorts.length > 0 && !policy.allowPorts.includes(port))
    return `egress to port ${port} is not in egress.allow_ports`;
  const loopbackName = host === "localhost" || host.endsWith(".localhost");
  if (policy.denyPrivate && (loopbackName || isPrivateAddress(host)))
    return `egress to private or loopback address ${host} is denied`;
  return null;
}

export function addressRefusal(policy: EgressPolicy, address: string): string | null {
  return policy.denyPrivate && isPrivateAddress(address)
    ? `egress to private or loopback address ${address} is denied`
    : null;
}
