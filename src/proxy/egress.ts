import { BlockList, isIP } from "node:net";
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

const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  PRIVATE.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
] as const) {
  PRIVATE.addSubnet(net, prefix, "ipv6");
}

const hostGlob = (pattern: string, host: string) =>
  globMatches(normaliseHostPattern(pattern).replaceAll(".", "/"), host.replaceAll(".", "/"));

export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return PRIVATE.check(mapped[1] as string, "ipv4");
  const family = isIP(address);
  if (family === 0) return false;
  return PRIVATE.check(address, family === 4 ? "ipv4" : "ipv6");
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
