import { parseBoundedJson } from "../parsing/bounded-json.js";
import { decodeBase64Json, requirementPrice } from "./payment-header.js";
import type { PaymentRequirement } from "./payment-header.js";

/**
 * Reads a 402 in any of the three forms stoka-protocol.md documents, as a tolerant reader:
 * 1. stoka: JSON body `{x402Version: 2, accepts}`; 2. x402 v1: same with `x402Version: 1`;
 * 3. x402 v2: `PAYMENT-REQUIRED` header (base64 JSON), body ignored.
 * Pure: no I/O. The retry header follows the form: X-PAYMENT for 1–2, PAYMENT-SIGNATURE for 3.
 */
export type ChallengeForm = "stoka" | "x402v1" | "x402v2";

export interface Challenge {
  form: ChallengeForm;
  /** Header that carries the payment on the retry. */
  paymentHeader: "x-payment" | "payment-signature";
  /** Header that carries the receipt on the paid answer. */
  receiptHeader: "x-payment-response" | "payment-response";
  accepts: PaymentRequirement[];
  /** The server's reason, when it gave one (e.g. why a payment was refused). */
  error?: string;
}

export type ChallengeParse = { ok: true; challenge: Challenge } | { ok: false; reason: string };

function readRequirement(raw: unknown, resourceUrl: string | undefined): PaymentRequirement | null {
  if (typeof raw !== "object" || raw === null) return null;
  const r = raw as Record<string, unknown>;
  const str = (k: string) => (typeof r[k] === "string" ? (r[k] as string) : undefined);
  const scheme = str("scheme");
  const network = str("network");
  const asset = str("asset");
  const payTo = str("payTo");
  const timeout = r.maxTimeoutSeconds;
  if (!scheme || !network || !asset || !payTo || typeof timeout !== "number" || !Number.isFinite(timeout))
    return null;
  const req: PaymentRequirement = { scheme, network, asset, payTo, maxTimeoutSeconds: timeout };
  const amount = str("amount");
  const maxAmountRequired = str("maxAmountRequired");
  if (amount !== undefined) req.amount = amount;
  if (maxAmountRequired !== undefined) req.maxAmountRequired = maxAmountRequired;
  const price = requirementPrice(req);
  if (price === undefined || !/^[0-9]{1,30}$/.test(price)) return null;
  if (typeof r.extra === "object" && r.extra !== null) req.extra = r.extra as Record<string, unknown>;
  const resource = str("resource") ?? resourceUrl;
  if (resource !== undefined) req.resource = resource;
  const description = str("description");
  if (description !== undefined) req.description = description;
  const mimeType = str("mimeType");
  if (mimeType !== undefined) req.mimeType = mimeType;
  return req;
}

function readAccepts(list: unknown, resourceUrl?: string): PaymentRequirement[] | null {
  if (!Array.isArray(list)) return null;
  const out: PaymentRequirement[] = [];
  for (const item of list) {
    const req = readRequirement(item, resourceUrl);
    if (req) out.push(req); // unknown or broken entries are skipped; another may still fit
  }
  return out.length > 0 ? out : null;
}

/**
 * @example
 * parseChallenge({ "payment-required": undefined }, '{"x402Version":2,"accepts":[...]}')
 * // → { ok: true, challenge: { form: "stoka", paymentHeader: "x-payment", ... } }
 */
export function parseChallenge(
  headers: Record<string, string | string[] | undefined>,
  bodyText: string,
): ChallengeParse {
  const requiredHeader = headers["payment-required"];
  const required = Array.isArray(requiredHeader) ? requiredHeader[0] : requiredHeader;
  if (required !== undefined) {
    let decoded: unknown;
    try {
      decoded = decodeBase64Json(required.trim());
    } catch {
      return { ok: false, reason: "PAYMENT-REQUIRED header is not base64 JSON" };
    }
    if (typeof decoded !== "object" || decoded === null || Array.isArray(decoded)) {
      return { ok: false, reason: "PAYMENT-REQUIRED header is not a JSON object" };
    }
    const d = decoded as {
      x402Version?: unknown;
      accepts?: unknown;
      error?: unknown;
      resource?: { url?: unknown };
    };
    const resourceUrl = typeof d.resource?.url === "string" ? d.resource.url : undefined;
    const accepts = readAccepts(d.accepts, resourceUrl);
    if (!accepts) return { ok: false, reason: "PAYMENT-REQUIRED header has no usable `accepts` entry" };
    return {
      ok: true,
      challenge: {
        form: "x402v2",
        paymentHeader: "payment-signature",
        receiptHeader: "payment-response",
        accepts,
        ...(typeof d.error === "string" ? { error: d.error } : {}),
      },
    };
  }
  let body: unknown;
  try {
    body = parseBoundedJson(bodyText);
  } catch (e) {
    return {
      ok: false,
      reason: `402 body is not usable JSON (${(e as Error).message}) and there is no PAYMENT-REQUIRED header`,
    };
  }
  if (typeof body !== "object" || body === null)
    return { ok: false, reason: "402 body is not a JSON object" };
  const b = body as { x402Version?: unknown; accepts?: unknown; error?: unknown };
  if (b.x402Version !== 1 && b.x402Version !== 2) {
    return { ok: false, reason: `402 body has unsupported x402Version ${JSON.stringify(b.x402Version)}` };
  }
  const accepts = readAccepts(b.accepts);
  if (!accepts) return { ok: false, reason: "402 body has no usable `accepts` entry" };
  return {
    ok: true,
    challenge: {
      form: b.x402Version === 1 ? "x402v1" : "stoka",
      paymentHeader: "x-payment",
      receiptHeader: "x-payment-response",
      accepts,
      ...(typeof b.error === "string" ? { error: b.error } : {}),
    },
  };
}
