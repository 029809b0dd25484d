import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import { readBoundedJson } from "../parsing/bounded-json.js";
import { readAll } from "../http/body.js";
import type { UpstreamClient } from "../http/upstream-client.js";
import { challengeFor } from "../proxy/wallet-auth-exchange.js";
import type { MessageSigner } from "../stellar/message-signer.js";
import { formatStellarAuthorization } from "../stellar/wallet-auth.js";
import { baseOf } from "../payment/book.js";
import type { PaymentBook } from "../payment/book.js";
import { compareDays } from "./reconcile.js";
import type { DayReport, UsageDay } from "./reconcile.js";

/**
 * The reconciler's I/O: reads the wallet's own counters from stoka (wallet-signed
 * `GET /v1/me/usage`), compares them with the ledger, and, when asked, resolves indeterminate
 * payments the numbers decide. Used by `stoka-proxy reconcile` and the optional periodic job.
 */
export interface ReconcileDeps {
  config: ProxyConfig;
  upstream: UpstreamClient;
  signer: MessageSigner | undefined;
  book: PaymentBook;
  logger: Logger;
  via: string;
}

export async function fetchUsage(deps: ReconcileDeps, days: number): Promise<UsageDay[]> {
  if (!deps.signer) {
    throw new StokaProxyError(
      "wallet_auth_failed",
      "reconciling needs the wallet key or a sign command",
      "set STELLAR_SECRET or wallet.sign_command",
    );
  }
  const base = deps.config.gatewayUpstream;
  const rule = deps.config.walletAuth.find((r) => r.route === "usage") ?? {
    audience: "usage",
    alternativeAudience: "me-usage",
  };
  const challenge = await challengeFor(deps.upstream, base, rule, deps.via);
  if (!challenge.ok)
    throw new StokaProxyError(
      "wallet_auth_failed",
      challenge.reason,
      "check the usage audience in wallet_auth",
    );
  const signature = await deps.signer.signMessage(challenge.message);
  const authorization = formatStellarAuthorization({
    publicKey: deps.signer.address,
    challengeId: challenge.id,
    signatureHex: signature,
  });
  const url = new URL(`/v1/me/usage?days=${days}`, base);
  const res = await deps.upstream.send({
    url,
    method: "GET",
    headers: { host: url.host, authorization, via: deps.via },
  });
  const body = (await readAll(res, MAX_USAGE_BYTES))?.toString("utf8") ?? "";
  if (res.statusCode !== 200)
    throw new StokaProxyError(
      "wallet_auth_failed",
      `usage answered ${res.statusCode}: ${body.slice(0, 200)}`,
      "check the wallet",
    );
  return readUsageDays(body);
}

const MAX_USAGE_BYTES = 1024 * 1024;

/** The `days` of a usage answer, read within bounds; anything else is an error, never a crash. */
export function readUsageDays(body: string): UsageDay[] {
  const unreadable = (why: string) =>
    new StokaProxyError(
      "wallet_auth_failed",
      `the usage answer is unreadable: ${why}`,
      "check the upstream; nothing was reconciled",
    );
  const parsed = readBoundedJson(body, { maxBytes: MAX_USAGE_BYTES, maxDepth: 8 });
  if (!parsed.ok) throw unreadable(parsed.reason);
  if (typeof parsed.value !== "object" || parsed.value === null || Array.isArray(parsed.value))
    throw unreadable("not a JSON object");
  const days = (parsed.value as { days?: unknown }).days ?? [];
  if (!Array.isArray(days)) throw unreadable("`days` is not a list");
  return days.map((d: unknown, i) => {
    const day = (typeof d === "object" && d !== null ? d : {}) as { date?: unknown; spent_atomic?: unknown };
    const spent = day.spent_atomic ?? "0";
    if (typeof day.date !== "string" || !/^[0-9]{1,30}$/.test(String(spent)))
      throw unreadable(`day ${i} has no date or no whole spent_atomic`);
    return { date: day.date, spentAtomic: BigInt(String(spent)) };
  });
}

export async function reconcile(deps: ReconcileDeps, days: number, resolve: boolean): Promise<DayReport[]> {
  const usage = await fetchUsage(deps, days);
  const reports = compareDays(deps.book.ledger.latest(), usage);
  if (!resolve) return reports;
  const latest = new Map(deps.book.ledger.latest().map((r) => [r.paymentId, r]));
  for (const day of reports) {
    if (day.status !== "all_indeterminate_charged" && day.status !== "no_indeterminate_charged") continue;
    const charged = day.status === "all_indeterminate_charged";
    for (const id of day.indeterminate) {
      const row = latest.get(id);
      if (!row) continue;
      deps.book.append(
        baseOf(row),
        charged ? "settled" : "rejected",
        row.tx,
        null,
        `reconciled with /v1/me/usage for ${day.date}`,
      );
      await deps.book.budgets.resolveIndeterminate(id, charged);
    }
    deps.logger.info(
      { date: day.date, resolved: day.indeterminate.length, charged },
      "reconciled indeterminate payments",
    );
  }
  return reports;
}
