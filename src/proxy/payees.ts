import type { PaidHost } from "../config/config.js";
import { parseBoundedJson } from "../parsing/bounded-json.js";
import { readAll } from "../http/body.js";
import type { UpstreamClient } from "../http/upstream-client.js";

/**
 * The payees a paid host may be paid: configured, or learned once from its manifest
 * (`x402.pay_to`, stoka-protocol.md "The manifest"). A manifest for another network or asset
 * teaches nothing. Failures are not cached, successes for ten minutes.
 */
const TTL_MS = 10 * 60_000;
const MAX_MANIFEST_BYTES = 256 * 1024;

export class PayeeRegistry {
  private readonly learned = new Map<string, { payTo: string[]; untilMs: number }>();

  constructor(
    private readonly upstream: UpstreamClient,
    private readonly expect: { network: string; asset: string },
  ) {}

  async allowed(host: PaidHost): Promise<string[]> {
    if (host.payTo.length > 0) return host.payTo;
    const key = host.upstream.origin;
    const cached = this.learned.get(key);
    if (cached && cached.untilMs > Date.now()) return cached.payTo;
    const payTo = await this.fetchManifest(host.upstream);
    if (payTo.length > 0) this.learned.set(key, { payTo, untilMs: Date.now() + TTL_MS });
    return payTo;
  }

  private async fetchManifest(base: URL): Promise<string[]> {
    try {
      const res = await this.upstream.send({
        url: new URL("/.well-known/stoka.json", base),
        method: "GET",
        headers: { host: base.host, accept: "application/json" },
      });
      const body = await readAll(res, MAX_MANIFEST_BYTES);
      if (res.statusCode !== 200 || !body) return [];
      const m = parseBoundedJson(body.toString("utf8"), {
        maxBytes: MAX_MANIFEST_BYTES,
        maxDepth: 32,
      }) as {
        x402?: { pay_to?: unknown; network?: unknown; asset?: unknown };
      };
      const x = m.x402;
      if (!x || x.network !== this.expect.network || x.asset !== this.expect.asset) return [];
      return typeof x.pay_to === "string" && /^G[A-Z2-7]{55}$/.test(x.pay_to) ? [x.pay_to] : [];
    } catch {
      return [];
    }
  }
}
