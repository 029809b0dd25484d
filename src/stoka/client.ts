import type { WalletAuthRoute } from "../config/config.js";
import type { UpstreamAnswer } from "../http/upstream-client.js";
import { StokaProxyError } from "../errors.js";
import { readAll } from "../http/body.js";
import { UpstreamRateLimited } from "../http/upstream-client.js";
import type { UpstreamClient } from "../http/upstream-client.js";
import { parseBoundedJson, readBoundedJson } from "../parsing/bounded-json.js";
import { parseRetryAfter } from "../resilience/retry-after.js";
import { readUsage } from "../resilience/usage-shapes.js";
import type { Usage } from "../resilience/usage-shapes.js";
import { formatStellarAuthorization } from "../stellar/wallet-auth.js";
import type { MessageSigner } from "../wallet/message-signer.js";
import { readPricing } from "./quote.js";
import type { StokaPricing } from "./quote.js";

/**
 * Every call the proxy makes to stoka's own API (docs/wire-protocol.md, "stoka's own API"), as
 * opposed to the app's requests it forwards: the manifest, wallet-auth challenges and the
 * wallet's usage counters. Used by the payment flow (payees), wallet-signed requests and the
 * reconciler alike. Answers are read within bounds; nothing here throws on a hostile body.
 *
 *   proxy ──GET /.well-known/stoka.json──────────────▶ stoka   (payees, when none are configured)
 *   proxy ──POST /v1/auth/challenge {audience}───────▶ stoka   (before each wallet-signed request)
 *   proxy ──GET /v1/me/usage?days=N + Authorization──▶ stoka   (reconcile)
 */
const MAX_MANIFEST_BYTES = 256 * 1024;
const MAX_CHALLENGE_BYTES = 64 * 1024;
const MAX_USAGE_BYTES = 1024 * 1024;

/** The manifest's `x402` section: the only part the proxy reads. */
export interface ManifestX402 {
  pay_to?: unknown;
  network?: unknown;
  asset?: unknown;
}

const CHALLENGE_HASH_BYTES = 32;

export type ChallengeAnswer =
  | { ok: true; id: string; message: string }
  /** `retryAfterSeconds`: the proxy's own rate limit for the host refused to send it. */
  | { ok: false; unknownAudience: boolean; reason: string; retryAfterSeconds?: number };

/** One UTC day of the wallet's spend, as `GET /v1/me/usage` reports it. */
export interface UsageDay {
  date: string;
  spentAtomic: bigint;
}

/** Which audience a route's challenge names, and the other spelling to try once. */
export type AudienceRule = Pick<WalletAuthRoute, "audience" | "alternativeAudience">;

export class StokaClient {
  constructor(
    /** The HTTP client; the running proxy's is rate limited per host (proxy/resilience.ts, limited). */
    private readonly http: Pick<UpstreamClient, "send">,
    /** Our Via token, sent on the challenge and usage calls. */
    private readonly via: string,
  ) {}

  /** `GET /.well-known/stoka.json` on `base`: its `x402` section, or null when unreadable. */
  async manifest(base: URL): Promise<ManifestX402 | null> {
    try {
      const res = await this.http.send({
        url: new URL("/.well-known/stoka.json", base),
        method: "GET",
        headers: { host: base.host, accept: "application/json" },
      });
      const body = await readAll(res, MAX_MANIFEST_BYTES);
      if (res.statusCode !== 200 || !body) return null;
      const m = parseBoundedJson(body.toString("utf8"), {
        maxBytes: MAX_MANIFEST_BYTES,
        maxDepth: 32,
      }) as { x402?: ManifestX402 };
      return m.x402 ?? null;
    } catch {
      return null;
    }
  }

  /** The manifest's `pricing` on `base` (quote-ahead), or null when missing or unreadable. */
  async pricing(base: URL): Promise<StokaPricing | null> {
    try {
      const res = await this.http.send({
        url: new URL("/.well-known/stoka.json", base),
        method: "GET",
        headers: { host: base.host, accept: "application/json" },
      });
      const body = await readAll(res, MAX_MANIFEST_BYTES);
      if (res.statusCode !== 200 || !body) return null;
      return readPricing(
        parseBoundedJson(body.toString("utf8"), { maxBytes: MAX_MANIFEST_BYTES, maxDepth: 32 }),
      );
    } catch {
      return null;
    }
  }

  /** `POST /v1/auth/challenge {audience}` on `base`. */
  async challenge(base: URL, audience: string): Promise<ChallengeAnswer> {
    const body = Buffer.from(JSON.stringify({ audience }));
    let res: UpstreamAnswer;
    try {
      res = await this.http.send({
        url: new URL("/v1/auth/challenge", base),
        method: "POST",
        headers: {
          host: base.host,
          "content-type": "application/json",
          "content-length": String(body.length),
          via: this.via,
        },
        body,
      });
    } catch (e) {
      return {
        ok: false,
        unknownAudience: false,
        reason: `challenge request failed: ${(e as Error).message}`,
        ...(e instanceof UpstreamRateLimited ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
      };
    }
    let text: string;
    try {
      text = (await readAll(res, MAX_CHALLENGE_BYTES))?.toString("utf8") ?? "";
    } catch (e) {
      return {
        ok: false,
        unknownAudience: false,
        reason: `challenge answer was cut: ${(e as Error).message}`,
      };
    }
    let json: { challenge_id?: unknown; message?: unknown; error?: unknown } = {};
    const parsed = readBoundedJson(text, { maxBytes: MAX_CHALLENGE_BYTES, maxDepth: 8 });
    if (parsed.ok && typeof parsed.value === "object" && parsed.value !== null)
      json = parsed.value as typeof json; // anything else is reported below
    if (res.statusCode === 200 && typeof json.challenge_id === "string" && typeof json.message === "string") {
      // Every signature Stellar checks (transactions, Soroban authorization entries, SEP-53
      // messages) is Ed25519 over a 32-byte hash: a challenge of that length could be one of
      // them, and signing it would hand the upstream an authorization to move the wallet's money.
      if (Buffer.byteLength(json.message, "utf8") === CHALLENGE_HASH_BYTES) {
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
    // Still rate limited once the retries were spent: when to try again, for the app.
    const wait =
      res.statusCode === 429
        ? (parseRetryAfter(res.headers["retry-after"], Date.now(), Number.MAX_SAFE_INTEGER)?.delayMs ?? 1000)
        : null;
    return {
      ok: false,
      unknownAudience: res.statusCode === 400 && /audience/i.test(error),
      reason: `challenge refused: ${error}`,
      ...(wait !== null ? { retryAfterSeconds: Math.max(1, Math.ceil(wait / 1000)) } : {}),
    };
  }

  /** A fresh challenge for `rule`, trying the alternative audience spelling once if needed. */
  async challengeFor(
    base: URL,
    rule: AudienceRule,
    onRequest: () => void = () => undefined,
  ): Promise<ChallengeAnswer> {
    onRequest();
    const first = await this.challenge(base, rule.audience);
    if (first.ok || !first.unknownAudience || !rule.alternativeAudience) return first;
    onRequest();
    return this.challenge(base, rule.alternativeAudience);
  }

  /** The wallet's per-day spend, wallet-signed `GET /v1/me/usage?days=N` on `base`. */
  async usage(base: URL, signer: MessageSigner, rule: AudienceRule, days: number): Promise<UsageDay[]> {
    return (await this.usageAnswer(base, signer, rule, days)).days;
  }

  /** The same answer whole: the days, and the payments when the answer lists them. */
  async usageAnswer(base: URL, signer: MessageSigner, rule: AudienceRule, days: number): Promise<Usage> {
    const challenge = await this.challengeFor(base, rule);
    if (!challenge.ok)
      throw new StokaProxyError(
        "wallet_auth_failed",
        challenge.reason,
        "check the usage audience in wallet_auth",
      );
    const signature = await signer.signMessage(challenge.message, { route: "usage" });
    const authorization = formatStellarAuthorization({
      publicKey: signer.address,
      challengeId: challenge.id,
      signatureHex: signature,
    });
    const url = new URL(`/v1/me/usage?days=${days}`, base);
    const res = await this.http.send({
      url,
      method: "GET",
      headers: { host: url.host, authorization, via: this.via },
    });
    const body = (await readAll(res, MAX_USAGE_BYTES))?.toString("utf8") ?? "";
    if (res.statusCode !== 200)
      throw new StokaProxyError(
        "wallet_auth_failed",
        `usage answered ${res.statusCode}: ${body.slice(0, 200)}`,
        "check the wallet",
      );
    return readUsageAnswer(body);
  }
}

/**
 * The `days` of a usage answer, read within bounds in every shape stoka has been seen to answer
 * (`{days: [...]}`, `{days: 7, series: [...]}`, per-day objects with date/day and
 * spent_atomic/charged_atomic/amount; resilience/usage-shapes.ts). Anything else is an error
 * naming what it got (keys and types, never values), never a crash.
 */
export function readUsageDays(body: string): UsageDay[] {
  return readUsageAnswer(body).days;
}

/** The usage answer whole (usage-shapes.ts), or `usage_unreadable` naming what it got. */
export function readUsageAnswer(body: string): Usage {
  const read = readUsage(body, { maxBytes: MAX_USAGE_BYTES, maxDepth: 8 });
  if (!read.ok)
    throw new StokaProxyError(
      "usage_unreadable",
      `the usage answer is unreadable: ${read.reason}`,
      "check STOKA_BASE_URL points at stoka; nothing was reconciled",
    );
  return read.usage;
}
