import type { IncomingMessage, ServerResponse } from "node:http";
import { globMatches } from "../budget/budget.js";
import type { WalletAuthRoute } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { readBoundedJson } from "../parsing/bounded-json.js";
import { formatStellarAuthorization, verifyChallengeSignature } from "../stellar/wallet-auth.js";
import { readAll } from "./body.js";
import type { ProxyContext, RequestRecord } from "./context.js";
import { timedSend } from "./paid-exchange.js";
import type { PaidTarget } from "./paid-exchange.js";
import type { PreparedRequest } from "./prepare.js";
import { pipeUpstream, sendError } from "./respond.js";
import { UpstreamError } from "./upstream.js";
import type { UpstreamClient } from "./upstream.js";

/**
 * Wallet-signed routes on paid hosts (design.md §3, stoka-protocol.md "Wallet-signed routes"):
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

const MAX_CHALLENGE_BYTES = 64 * 1024;
const HASH_BYTES = 32;

export type ChallengeAnswer =
  { ok: true; id: string; message: string } | { ok: false; unknownAudience: boolean; reason: string };

/** POST /v1/auth/challenge {audience} on the paid host's upstream. */
export async function requestChallenge(
  upstream: UpstreamClient,
  base: URL,
  audience: string,
  via: string,
): Promise<ChallengeAnswer> {
  const body = Buffer.from(JSON.stringify({ audience }));
  let res: IncomingMessage;
  try {
    res = await upstream.send({
      url: new URL("/v1/auth/challenge", base),
      method: "POST",
      headers: {
        host: base.host,
        "content-type": "application/json",
        "content-length": String(body.length),
        via,
      },
      body,
    });
  } catch (e) {
    return { ok: false, unknownAudience: false, reason: `challenge request failed: ${(e as Error).message}` };
  }
  let text: string;
  try {
    text = (await readAll(res, MAX_CHALLENGE_BYTES))?.toString("utf8") ?? "";
  } catch (e) {
    return { ok: false, unknownAudience: false, reason: `challenge answer was cut: ${(e as Error).message}` };
  }
  let json: { challenge_id?: unknown; message?: unknown; error?: unknown } = {};
  const parsed = readBoundedJson(text, { maxBytes: MAX_CHALLENGE_BYTES, maxDepth: 8 });
  if (parsed.ok && typeof parsed.value === "object" && parsed.value !== null)
    json = parsed.value as typeof json; // anything else is reported below
  if (res.statusCode === 200 && typeof json.challenge_id === "string" && typeof json.message === "string") {
    // Every signature Stellar checks (transactions, Soroban authorization entries, SEP-53
    // messages) is Ed25519 over a 32-byte hash: a challenge of that length could be one of them,
    // and signing it would hand the upstream an authorization to move the wallet's money.
    if (Buffer.byteLength(json.message, "utf8") === HASH_BYTES) {
      return {
        ok: false,
        unknownAudience: false,
        reason:
          "challenge refused: its message is 32 bytes, the size of a hash the wallet key signs for payments",
      };
    }
    return { ok: true, id: json.challenge_id, message: json.message };
  }
  const error = typeof json.error === "string" ? json.error : `status ${res.statusCode}`;
  return {
    ok: false,
    unknownAudience: res.statusCode === 400 && /audience/i.test(error),
    reason: `challenge refused: ${error}`,
  };
}

/** A fresh challenge for `rule`, trying the alternative audience spelling once if needed. */
export async function challengeFor(
  upstream: UpstreamClient,
  base: URL,
  rule: Pick<WalletAuthRoute, "audience" | "alternativeAudience">,
  via: string,
  onRequest: () => void = () => undefined,
): Promise<ChallengeAnswer> {
  onRequest();
  const first = await requestChallenge(upstream, base, rule.audience, via);
  if (first.ok || !first.unknownAudience || !rule.alternativeAudience) return first;
  onRequest();
  return requestChallenge(upstream, base, rule.alternativeAudience, via);
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
    const challenge = await challengeFor(ctx.upstream, target.host.upstream, rule, ctx.via, () => {
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
      signature = await signer.signMessage(challenge.message);
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
      const timeout = e instanceof UpstreamError && e.kind === "timeout";
      return sendError(
        res,
        new StokaProxyError(
          timeout ? "upstream_timeout" : "upstream_unreachable",
          `stoka: ${(e as Error).message}`,
          "retry later",
        ),
      );
    }
    if (answer.statusCode !== 401 || attempt === 2) {
      record.walletAuth =
        answer.statusCode === 401 ? "rejected" : attempt === 1 ? "signed" : "signed_after_retry";
      return pipeUpstream(answer, res, {}, ctx.via);
    }
    answer.resume(); // 401 on the first attempt (expired or used challenge): one fresh try
  }
}
