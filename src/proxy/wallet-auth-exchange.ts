import type { IncomingMessage, ServerResponse } from "node:http";
import { globMatches } from "../parsing/glob.js";
import type { WalletAuthRoute } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { formatStellarAuthorization, verifyChallengeSignature } from "../stellar/wallet-auth.js";
import type { RequestRecord } from "../observability/request-record.js";
import type { PaidTarget, ProxyContext } from "./context.js";
import { timedSend } from "./timed-send.js";
import type { PreparedRequest } from "./prepare.js";
import { sendError, timedOut, upstreamFailure } from "./error-answers.js";
import { pipeUpstream } from "./respond.js";

/**
 * Wallet-signed routes on paid hosts (docs/architecture.md, Wallet-signed requests; docs/wire-protocol.md, Wallet-signed routes):
 *
 *   app ──DELETE /v1/object/k──▶ proxy ──POST /v1/auth/challenge {audience}──▶ stoka
 *                                  ◀── {challenge_id, message} ──
 *                                  sign(message) ─▶ Authorization: Stellar G:id:hex
 *                               ──DELETE /v1/object/k + Authorization──▶ stoka
 *                                  401? ─▶ one more time with a fresh challenge, then the 401 goes to the app
 *
 * A fresh challenge for every attempt, never cached. Nothing is forwarded when signing fails.
 */
export function walletAuthRule(
  rules: readonly WalletAuthRoute[],
  method: string,
  path: string,
  route: string,
): WalletAuthRoute | undefined {
  return rules.find((r) =>
    r.route !== undefined
      ? r.route === route
      : r.method === method.toUpperCase() && r.path !== undefined && globMatches(r.path, path),
  );
}

export async function walletSignedExchange(
  ctx: ProxyContext,
  prepared: PreparedRequest,
  res: ServerResponse,
  target: PaidTarget,
  record: RequestRecord,
  rule: WalletAuthRoute,
): Promise<void> {
  const signer = ctx.messageSigner;
  if (!signer) {
    record.walletAuth = "no_signer";
    return sendError(
      res,
      new StokaProxyError(
        "wallet_auth_failed",
        "no wallet key or sign command is configured to sign this request",
        "set STELLAR_SECRET or wallet.sign_command",
      ),
    );
  }
  for (let attempt = 1; attempt <= 2; attempt++) {
    const challenge = await ctx.stoka.challengeFor(target.host.upstream, rule, () => {
      record.challengeRequests = (record.challengeRequests ?? 0) + 1;
    });
    if (!challenge.ok) {
      record.walletAuth = "failed";
      return sendError(
        res,
        new StokaProxyError(
          "wallet_auth_failed",
          challenge.reason,
          "check the route's audience in wallet_auth; nothing was forwarded",
        ),
      );
    }
    let signature: string;
    try {
      signature = await signer.signMessage(challenge.message, { route: record.route });
    } catch (e) {
      record.walletAuth = "failed";
      return sendError(
        res,
        e instanceof StokaProxyError
          ? e
          : new StokaProxyError(
              "sign_failed",
              `signing the challenge failed: ${(e as Error).message}`,
              "check the wallet key",
            ),
      );
    }
    if (
      !/^[0-9a-f]{128}$/.test(signature) ||
      !verifyChallengeSignature(signer.address, challenge.message, signature)
    ) {
      record.walletAuth = "failed";
      return sendError(
        res,
        new StokaProxyError(
          "sign_failed",
          `the signature does not verify for ${signer.address}`,
          "check that the sign command uses the wallet's key",
        ),
      );
    }
    const authorization = formatStellarAuthorization({
      publicKey: signer.address,
      challengeId: challenge.id,
      signatureHex: signature,
    });
    let answer: IncomingMessage;
    try {
      answer = await timedSend(record, () =>
        ctx.upstream.send({
          url: target.url,
          method: prepared.method,
          headers: { ...prepared.headers, authorization },
          body: prepared.body.length > 0 ? prepared.body : undefined,
        }),
      );
    } catch (e) {
      record.walletAuth = "failed";
      return sendError(res, upstreamFailure(timedOut(e), "stoka", (e as Error).message));
    }
    if (answer.statusCode !== 401 || attempt === 2) {
      record.walletAuth =
        answer.statusCode === 401 ? "rejected" : attempt === 1 ? "signed" : "signed_after_retry";
      return pipeUpstream(answer, res, {}, ctx.via);
    }
    answer.resume(); // 401 on the first attempt (expired or used challenge): one fresh try
  }
}
