import { parseBoundedJson } from "../parsing/bounded-json.js";

/**
 * The x402 payment and receipt headers (stoka-protocol.md "The paid retry"): standard base64
 * with padding of UTF-8 JSON. The payment JSON is the superset both stoka pages and the x402 v2
 * spec accept: `{x402Version: 2, scheme, network, accepted, resource?, payload: {transaction}}`.
 */
export interface PaymentRequirement {
  scheme: string;
  network: string;
  asset: string;
  payTo: string;
  amount?: string;
  maxAmountRequired?: string;
  maxTimeoutSeconds: number;
  extra?: Record<string, unknown>;
  resource?: string;
  description?: string;
  mimeType?: string;
}

export interface PaymentPayload {
  x402Version: number;
  scheme?: string;
  network?: string;
  accepted?: PaymentRequirement;
  resource?: unknown;
  payload: { transaction: string };
}

export interface PaymentReceipt {
  success: boolean;
  transaction: string;
  network: string;
  payer: string;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function encodeBase64Json(value: unknown): string {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64");
}

/** Strict decode: standard alphabet with padding only, as the official x402 decoders are. */
export function decodeBase64Json(value: string): unknown {
  if (value.length === 0 || value.length % 4 !== 0 || !BASE64.test(value)) {
    throw new SyntaxError("header is not standard padded base64");
  }
  // Bounded: these headers come from upstreams and external signers (too deep or too large throws).
  return parseBoundedJson(Buffer.from(value, "base64").toString("utf8"));
}

/** The price a requirement asks for: `amount` if present, else `maxAmountRequired`. */
export function requirementPrice(req: PaymentRequirement): string | undefined {
  return req.amount ?? req.maxAmountRequired;
}

export function buildPaymentPayload(req: PaymentRequirement, transaction: string): PaymentPayload {
  const price = requirementPrice(req);
  if (price === undefined) throw new TypeError("requirement has neither amount nor maxAmountRequired");
  const accepted: PaymentRequirement = { ...req, amount: price };
  return {
    x402Version: 2,
    scheme: req.scheme,
    network: req.network,
    accepted,
    ...(req.resource !== undefined ? { resource: req.resource } : {}),
    payload: { transaction },
  };
}

export function isPaymentReceipt(value: unknown): value is PaymentReceipt {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return typeof r.success === "boolean" && typeof r.transaction === "string";
}
