import type { WalletAuthRoute } from "../config/config.js";
import { normaliseHost } from "../http/host-name.js";
import { isPayCommandId } from "../observability/request-id.js";
import type { LedgerClose } from "./settle.js";

/**
 * The signer role's pure checks (docs/security.md, Keyless sidecars): what a sidecar's request
 * must look like, which wallet-auth messages a token may have signed, and how a sidecar's
 * report closes the signer's own ledger row. The I/O is proxy/signer-server.ts.
 */

/** A payment request from a sidecar, read. Everything else is decided by the signer itself. */
export interface SignRequest {
  /** The sidecar's own ids: kept in the signer's ledger (request_id) and logs, never trusted. */
  sidecarPaymentId: string;
  requestId: string;
  method: string;
  host: string;
  port: number;
  url: URL;
  challenge: { paymentRequired?: string; body: string };
  /** The requirement the sidecar chose, verbatim: the signer pays only this one, if it passes. */
  accepted: unknown;
}

export type Read<T> = { ok: true; value: T } | { ok: false; reason: string };

const ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const METHOD = /^[A-Z]{1,16}$/;

export function readSignRequest(json: unknown): Read<SignRequest> {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    return { ok: false, reason: "the body must be a JSON object" };
  const b = json as Record<string, unknown>;
  const r = b.request as Record<string, unknown> | undefined;
  const c = b.challenge as Record<string, unknown> | undefined;
  if (typeof r !== "object" || r === null) return { ok: false, reason: "request is missing" };
  if (typeof c !== "object" || c === null) return { ok: false, reason: "challenge is missing" };
  if (typeof r.payment_id !== "string" || !ID.test(r.payment_id))
    return { ok: false, reason: "request.payment_id must be an id" };
  if (typeof r.request_id !== "string" || !ID.test(r.request_id))
    return { ok: false, reason: "request.request_id must be an id" };
  // A sidecar never sends `stoka-proxy pay`'s mark: booked under it, `pay --failed` could free it.
  if (isPayCommandId(r.request_id))
    return { ok: false, reason: "request.request_id must not pose as a `stoka-proxy pay` payment" };
  if (typeof r.method !== "string" || !METHOD.test(r.method))
    return { ok: false, reason: "request.method must be an HTTP method" };
  const host = typeof r.host === "string" ? normaliseHost(r.host) : null;
  if (host === null) return { ok: false, reason: "request.host must be a host name" };
  if (typeof r.port !== "number" || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535)
    return { ok: false, reason: "request.port must be a port" };
  let url: URL;
  try {
    url = new URL(typeof r.url === "string" ? r.url : "");
  } catch {
    return { ok: false, reason: "request.url must be a URL" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return { ok: false, reason: "request.url must be http or https" };
  if (typeof c.body !== "string") return { ok: false, reason: "challenge.body must be a string" };
  if (c.payment_required !== undefined && typeof c.payment_required !== "string")
    return { ok: false, reason: "challenge.payment_required must be a string" };
  if (b.accepted === undefined) return { ok: false, reason: "accepted (the chosen requirement) is missing" };
  return {
    ok: true,
    value: {
      sidecarPaymentId: r.payment_id,
      requestId: r.request_id,
      method: r.method,
      host,
      port: r.port,
      url,
      challenge: {
        ...(typeof c.payment_required === "string" ? { paymentRequired: c.payment_required } : {}),
        body: c.body,
      },
      accepted: b.accepted,
    },
  };
}

/** A sidecar's report of how a payment it was signed ended. */
export interface OutcomeReport {
  state: "settled" | "rejected" | "failed" | "indeterminate";
  tx: string | null;
  status: number | null;
  reason: string | null;
}

export function readOutcomeReport(json: unknown): Read<OutcomeReport> {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    return { ok: false, reason: "the body must be a JSON object" };
  const b = json as Record<string, unknown>;
  if (b.state !== "settled" && b.state !== "rejected" && b.state !== "failed" && b.state !== "indeterminate")
    return { ok: false, reason: "state must be settled, rejected, failed or indeterminate" };
  const tx = typeof b.tx === "string" && /^[0-9a-f]{64}$/.test(b.tx) ? b.tx : null;
  const status = typeof b.status === "number" && Number.isInteger(b.status) ? b.status : null;
  const reason = typeof b.reason === "string" ? b.reason.slice(0, 300) : null;
  return { ok: true, value: { state: b.state, tx, status, reason } };
}

/**
 * How the sidecar's report closes the signer's row. Only `settled` is taken at its word: it
 * keeps the money counted, as every other answer does. A report that would give budget back
 * (rejected, failed) is not: a stolen token could sign, spend, say "failed" and sign again,
 * past its quota. Those rows become indeterminate (still counted) until `stoka-proxy reconcile`
 * on the signer asks stoka what was charged.
 *
 *   report          signer's ledger    budget
 *   settled (tx)    settled (tx)       commit
 *   rejected        indeterminate      stays counted (reconcile decides)
 *   failed          indeterminate      stays counted (reconcile decides)
 *   indeterminate   indeterminate      stays counted (reconcile decides)
 */
export function closeFromReport(r: OutcomeReport): LedgerClose {
  if (r.state === "settled")
    return {
      state: "settled",
      tx: r.tx,
      status: r.status,
      reason: r.tx ? "reported by the sidecar" : "reported by the sidecar; no receipt",
      budget: "commit",
    };
  return {
    state: "indeterminate",
    tx: null,
    status: r.status,
    reason: `the sidecar reported ${r.state}${r.reason ? ` (${r.reason})` : ""}; counted until reconciled`,
    budget: "markIndeterminate",
  };
}

/**
 * stoka's challenge messages name their audience first (`stoka-auth:<audience>:…`,
 * docs/wire-protocol.md, Wallet-signed routes). Anything else is never signed: a wallet-auth
 * signature is an Ed25519 signature by the wallet's key, and a 32-byte message could be a hash
 * the key signs for payments (stoka/client.ts refuses those too).
 */
const MESSAGE = /^stoka-auth:([A-Za-z0-9_-]{1,64}):[\x21-\x7e]{1,400}$/;

export type WalletAuthVerdict = { ok: true } | { ok: false; code: "signer_refused"; reason: string };

export function walletAuthAllowed(input: {
  route: unknown;
  message: unknown;
  /** The token's wallet_auth_routes. */
  allowedRoutes: readonly string[];
  /** The signer's own wallet_auth rules: a route's audiences. */
  rules: readonly WalletAuthRoute[];
}): WalletAuthVerdict {
  const refuse = (reason: string): WalletAuthVerdict => ({ ok: false, code: "signer_refused", reason });
  if (typeof input.route !== "string" || typeof input.message !== "string")
    return refuse("route and message must be strings");
  if (!input.allowedRoutes.includes(input.route))
    return refuse(`this token may not have ${JSON.stringify(input.route)} requests signed`);
  if (Buffer.byteLength(input.message, "utf8") === 32) return refuse("a 32-byte message is never signed");
  const m = MESSAGE.exec(input.message);
  if (!m) return refuse("the message is not a stoka challenge (stoka-auth:<audience>:…)");
  const audience = m[1] as string;
  const rule = input.rules.find((r) => r.route === input.route);
  if (!rule) return refuse(`the signer has no wallet_auth rule for ${JSON.stringify(input.route)}`);
  if (audience !== rule.audience && audience !== rule.alternativeAudience)
    return refuse(
      `the challenge is for audience ${JSON.stringify(audience)}, not the ${input.route} route's (${rule.audience})`,
    );
  return { ok: true };
}
