import { BlockList } from "node:net";
import { normaliseHost } from "../http/host-name.js";

/**
 * Does host:port name this proxy's own listener? Then forwarding it is a loop. Both sides in
 * the normalised spelling (http/host-name.ts), so `127.1`, `LOCALHOST.` and `[::ffff:127.0.0.1]`
 * are caught like `127.0.0.1`. Pure.
 */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

const isLoopback = (host: string) =>
  host === "localhost" ||
  host.endsWith(".localhost") ||
  LOOPBACK.check(host, host.includes(":") ? "ipv6" : "ipv4");
const isUnspecified = (host: string) => host === "0.0.0.0" || host === "::";

export function targetsListener(
  listener: { address: string; port: number },
  host: string,
  port: number,
): boolean {
  if (port !== listener.port) return false;
  const target = normaliseHost(host);
  const own = normaliseHost(listener.address);
  if (target === null || own === null) return false;
  if (target === own) return true;
  // Connecting to a loopback or unspecified address reaches a listener on loopback or on all addresses.
  const local = (h: string) => isLoopback(h) || isUnspecified(h);
  return local(target) && local(own);
}
