import { normaliseHost } from "../http/host-name.js";

/**
 * The x402 v2 header form names the resource being paid for (`resource.url`), and the payment
 * echoes it. A 402 from one paid host that names another host's resource is asking the wallet
 * to pay for something elsewhere: refused, whatever the payee. Pure.
 *
 * @example resourceElsewhere({ url: "https://evil.example/x" }, ["api.stoka.space"]) // a reason
 * @example resourceElsewhere({ url: "https://API.stoka.space./x" }, ["api.stoka.space"]) // null
 */
export function resourceElsewhere(resource: unknown, hosts: readonly string[]): string | null {
  if (typeof resource !== "object" || resource === null) return null;
  const url = (resource as { url?: unknown }).url;
  if (typeof url !== "string") return null;
  let named: string | null;
  try {
    named = normaliseHost(new URL(url).hostname);
  } catch {
    return `the 402's resource.url is not a URL`;
  }
  const ours = hosts.map((h) => normaliseHost(h));
  if (named !== null && ours.includes(named)) return null;
  return `the 402's resource names another host (${named ?? JSON.stringify(url)}), not ${hosts[0] ?? "this one"}`;
}
