import type { ServerResponse } from "node:http";
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
import type { UnpaidResult } from "./resilience.js";
import { maySendSignedAgain } from "../resilience/retry-policy.js";
import type { MessageSigner } from "../wallet/message-signer.js";

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
 * Both sends take the upstream host's rate-limiter slot and are retried as unpaid attempts:
 * the challenge on a connection error, 429 or 502-504; the signed request on a connection that
 * never opened, and on 429 / 502-504 only for idempotent methods (retry-policy.ts,
 * maySendSignedAgain; docs/operations.md, Retries).
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
  // Every send is rate limited per upstream host and retried as an unpaid attempt
  // (resilience.ts, sendUnpaid): the challenge fetch always (resilience.limited, through
  // ctx.stoka), the signed request only as maySendSignedAgain allows, each time with a fresh
  // challenge and signature. Then a 401 (an expired or used challenge) gets one more try.
  for (let attempt = 1; attempt <= 2; attempt++) {
    let authorization = "";
    let result: UnpaidResult;
    try {
      result = await ctx.resilience.sendUnpaid(
        {
          host: target.url.host,
          route: record.route,
          headers: prepared.headers,
          gone: () => res.destroyed,
          before: async () => {
            authorization = await authorize(ctx, target, record, rule, signer);
          },
          mayRetry: (failure) => maySendSignedAgain(prepared.method, failure),
        },
        () =>
          timedSend(record, () =>
            ctx.upstream.send({
              url: target.url,
              method: prepared.method,
              headers: { ...prepared.headers, authorization },
              body: prepared.body.length > 0 ? prepared.body : undefined,
            }),
          ),
      );
    } catch (e) {
      record.walletAuth = "failed";
      if (e instanceof WalletAuthStop) return sendError(res, e.error, e.headers);
      return sendError(res, upstreamFailure(timedOut(e), "stoka", (e as Error).message));
    }
    if (result.kind === "limited") {
      record.walletAuth = "failed";
      record.errorCode = "rate_limited";
      return sendError(res, rateLimitedError(result.reason, result.retryAfterSeconds), {
        "retry-after": String(result.retryAfterSeconds),
      });
    }
    const answer = result.response;
    if (answer.statusCode !== 401 || attempt === 2) {
      record.walletAuth =
        answer.statusCode === 401 ? "rejected" : attempt === 1 ? "signed" : "signed_after_retry";
      return pipeUpstream(answer, res, {}, ctx.via);
    }
    answer.resume(); // 401 on the first attempt (expired or used challenge): one fresh try
  }
}

/** Why nothing was forwarded: the answer for the app (thrown out of a send's `before`). */
class WalletAuthStop extends Error {
  constructor(
    readonly error: StokaProxyError,
    readonly headers: Record<string, string> = {},
  ) {
    super(error.message);
  }
}

export function rateLimitedError(reason: string, retryAfterSeconds: number): StokaProxyError {
  return new StokaProxyError("rate_limited", reason, `retry after ${retryAfterSeconds} s; nothing was sent`, {
    details: { retry_after_seconds: retryAfterSeconds },
  });
}

/** A fresh challenge, signed and checked: the Authorization value, or a WalletAuthStop. */
async function authorize(
  ctx: ProxyContext,
  target: PaidTarget,
  record: RequestRecord,
  rule: WalletAuthRoute,
  signer: MessageSigner,
): Promise<string> {
  const challenge = await ctx.stoka.challengeFor(target.host.upstream, rule, () => {
    record.challengeRequests = (record.challengeRequests ?? 0) + 1;
  });
  if (!challenge.ok) {
    if (challenge.retryAfterSeconds !== undefined) {
      record.errorCode = "rate_limited";
      throw new WalletAuthStop(rateLimitedError(challenge.reason, challenge.retryAfterSeconds), {
        "retry-after": String(challenge.retryAfterSeconds),
      });
    }
    throw new WalletAuthStop(
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
    throw new WalletAuthStop(
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
    throw new WalletAuthStop(
      new StokaProxyError(
        "sign_failed",
        `the signature does not verify for ${signer.address}`,
        "check that the sign command uses the wallet's key",
      ),
    );
  }
  return formatStellarAuthorization({
    publicKey: signer.address,
    challengeId: challenge.id,
    signatureHex: signature,
  });
}
