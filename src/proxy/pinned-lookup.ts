import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import type { LookupAddress, LookupOptions } from "node:dns";
import { addressRefusal } from "./egress.js";
import type { EgressPolicy } from "../config/config.js";

/**
 * DNS for connections to hosts that are not paid hosts (pass-through forwards and blind
 * tunnels): the name is resolved once, every address is checked against the egress policy, and
 * only one allowed address is handed back, so the socket connects to the address that was
 * checked (no second lookup that DNS rebinding could answer differently). IP literals never get
 * here: net.connect does not look them up, and egressRefusal judges them by name.
 *
 *   agent ──lookup(name)──▶ resolve once ─▶ [a1, a2, …] ─▶ first allowed ─▶ connect(a)
 *                                                       └─ none allowed ─▶ EgressDenied (403)
 */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Every address of a name. The system resolver in production; tests may inject another. */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (host) =>
  (await dns.lookup(host, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

/** The egress policy refused every address of the name; mapped to 403 egress_denied. */
export class EgressDenied extends Error {
  readonly code = "EGRESS_DENIED";
}

export type AddressChoice =
  { ok: true; address: ResolvedAddress } | { ok: false; denied: boolean; reason: string };

/** Pure: the first address the policy allows (of the family asked for, if any). */
export function chooseAddress(
  policy: EgressPolicy,
  host: string,
  addresses: readonly ResolvedAddress[],
  family?: 4 | 6,
): AddressChoice {
  const candidates = addresses.filter((a) => family === undefined || a.family === family);
  if (candidates.length === 0) return { ok: false, denied: false, reason: `${host} has no address` };
  const allowed = candidates.find((a) => addressRefusal(policy, a.address) === null);
  if (allowed) return { ok: true, address: allowed };
  const first = candidates[0] as ResolvedAddress;
  return { ok: false, denied: true, reason: addressRefusal(policy, first.address) ?? "denied" };
}

/** Resolves `host` once and returns the one address to connect to. */
export async function resolveAllowed(
  policy: EgressPolicy,
  resolve: Resolver,
  host: string,
  family?: 4 | 6,
): Promise<ResolvedAddress> {
  const literal = isIP(host);
  const addresses = literal
    ? [{ address: host, family: literal === 6 ? 6 : 4 } as const]
    : await resolve(host);
  const choice = chooseAddress(policy, host, addresses, family);
  if (choice.ok) return choice.address;
  if (choice.denied) throw new EgressDenied(`${host}: ${choice.reason}`);
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

function familyOf(options: LookupOptions | number | undefined): 4 | 6 | undefined {
  const f = typeof options === "number" ? options : options?.family;
  if (f === 4 || f === "IPv4") return 4;
  if (f === 6 || f === "IPv6") return 6;
  return undefined;
}

/** A `lookup` for http(s).Agent / net.connect that pins the checked address. */
export function pinnedLookup(policy: EgressPolicy | (() => EgressPolicy), resolve: Resolver) {
  // A function is read at each lookup, so a reloaded egress policy applies to the next connection.
  const current = typeof policy === "function" ? policy : () => policy;
  return (hostname: string, options: LookupOptions | number | undefined, callback: LookupCallback): void => {
    const all = typeof options === "object" && options.all === true;
    resolveAllowed(current(), resolve, hostname, familyOf(options)).then(
      (a) => (all ? callback(null, [a]) : callback(null, a.address, a.family)),
      (e: NodeJS.ErrnoException) => callback(e, all ? [] : ""),
    );
  };
}
