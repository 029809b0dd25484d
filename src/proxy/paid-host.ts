import type { IncomingMessage, ServerResponse } from "node:http";
import type { RequestRecord } from "../observability/request-record.js";
import type { PaidTarget, ProxyContext } from "./context.js";
import { paidExchange } from "./paid-exchange.js";
import { prepareRequest } from "./prepare.js";
import { walletAuthRule, walletSignedExchange } from "./wallet-auth-exchange.js";

/**
 * Every request to a paid host: wallet-signed routes get `Authorization: Stellar …` (unless the
 * app set its own and the route keeps it); everything else goes through the payment flow.
 */
export async function handlePaidHost(
  ctx: ProxyContext,
  req: IncomingMessage,
  res: ServerResponse,
  target: PaidTarget,
  record: RequestRecord,
): Promise<void> {
  const prepared = await prepareRequest(ctx, req, target.url);
  const rule = walletAuthRule(ctx.config.walletAuth, prepared.method, target.url.pathname, record.route);
  if (rule) {
    if (prepared.headers.authorization === undefined || rule.replaceAuthorization) {
      return walletSignedExchange(ctx, prepared, res, target, record, rule);
    }
    record.walletAuth = "app_authorization";
  }
  return paidExchange(ctx, prepared, res, target, record);
}
