import { parseBoundedJson } from "../parsing/bounded-json.js";
import { decodeBase64Json } from "./payment-header.js";
import type { PaymentRequirement } from "./payment-header.js";

/**
 * Reads a 402 in any of the three forms docs/wire-protocol.md describes, as a tolerant reader:
 * 1. stoka: JSON body `{x402Version: 2, accepts}`; 2. x402 v1: same with `x402Version: 1`;
 * 3. x402 v2: `PAYMENT-REQUIRED` header (base64 JSON), body ignored.
 * Pure: no I/O. The retry header follows the form: X-PAYMENT for 1–2, PAYMENT-SIGNATURE for 3.
 * Everything the payment must echo (each requirement, and for form 3 `resource` and
 * `extensions`) is kept exactly as received.
 */
export type ChallengeForm = "stoka" | "x402v1" | "x402v2";

export interface Challenge {
  form: ChallengeForm;
  /** The x402 version the payment must name: 1 for the v1 body, 2 otherwise. */
  x402Version: 1 | 2;
  /** Header that carries the payment on the retry. */
  paymentHeader: "x-payment" | "payment-signature";
  /** Header that carries the receipt on the paid answer. */
  receiptHeader: "x-payment-response" | "payment-response";
  accepts: PaymentRequirement[];
  /** Form 3: PAYMENT-REQUIRED's `resource`, verbatim (echoed in the payment). */
  resource?: unknown;
  /** Form 3: PAYMENT-REQUIRED's `extensions`, verbatim, when it had any (echoed). */
  extensions?: unknown;
  /** The server's reason, when it gave one (e.g. why a payment was refused). */
  error?: string;
}

export type ChallengeParse = { ok: true; challenge: Challenge } | { ok: false; reason: string };

const PRICE = /^[0-9]{1,30}$/;

/**
 * The typed view of one requirement, or null when it is unusable (a field the proxy needs is
 * missing or of the wrong type). The server's object rides along as `raw`, untouched.
 */
export function readRequirement(raw: unknown): PaymentRequirement | null {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return null;
  const r = raw as Record<string, unknown>;
  const str = (k: string) => (typeof r[k] === "string" ? (r[k] as string) : undefined);
  const scheme = str("scheme");
  const network = str("network");
  const asset = str("asset");
  const payTo = str("payTo");
  const timeout = r.maxTimeoutSeconds;
  if (!scheme || !network || !asset || !payTo || typeof timeout !== "number" || !Number.isFinite(timeout))
    return null;
  const req: PaymentRequirement = { scheme, network, asset, payTo, maxTimeoutSeconds: timeout, raw: r };
  // The price is `amount` when the key is there (even if malformed: then the entry is broken,
  // never silently priced from `maxAmountRequired` instead), else `maxAmountRequired`.
  if ("amount" in r) {
    const amount = str("amount");
    if (amount === undefined || !PRICE.test(amount)) return null;
    req.amount = amount;
    const max = str("maxAmountRequired");
    if (max !== undefined) req.maxAmountRequired = max;
  } else {
    const max = str("maxAmountRequired");
    if (max === undefined || !PRICE.test(max)) return null;
    req.maxAmountRequired = max;
  }
  if (typeof r.extra === "object" && r.extra !== null && !Array.isArray(r.extra))
    req.extra = r.extra as Record<string, unknown>;
  return req;
}

function readAccepts(list: unknown): PaymentRequirement[] | null {
  if (!Array.isArray(list)) return null;
  const out: PaymentRequirement[] = [];
  for (const item of list) {
    const req = readRequirement(item);
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
    const d = decoded as Record<string, unknown>;
    // The header form is x402 v2; a missing version is read as 2, any other one is refused.
    if ("x402Version" in d && d.x402Version !== 2) {
      return {
        ok: false,
        reason: `PAYMENT-REQUIRED header has unsupported x402Version ${JSON.stringify(d.x402Version)}`,
      };
    }
    const accepts = readAccepts(d.accepts);
    if (!accepts) return { ok: false, reason: "PAYMENT-REQUIRED header has no usable `accepts` entry" };
    return {
      ok: true,
      challenge: {
        form: "x402v2",
        x402Version: 2,
        paymentHeader: "payment-signature",
        receiptHeader: "payment-response",
        accepts,
        ...("resource" in d ? { resource: d.resource } : {}),
        ...(d.extensions !== undefined ? { extensions: d.extensions } : {}),
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
      x402Version: b.x402Version,
      paymentHeader: "x-payment",
      receiptHeader: "x-payment-response",
      accepts,
      ...(typeof b.error === "string" ? { error: b.error } : {}),
    },
  };
}
