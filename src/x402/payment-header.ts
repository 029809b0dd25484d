import { parseBoundedJson } from "../parsing/bounded-json.js";

/**
 * The x402 payment and receipt headers (docs/wire-protocol.md): standard base64 with padding of
 * UTF-8 JSON, and the typed view of one payment requirement. What the payment JSON looks like
 * for each challenge form is payment-payload.ts.
 *
 * What the proxy and its emulator send is what the official `@x402/core/http` encoders send,
 * byte for byte (base64 of the UTF-8 JSON; test/unit/x402-header-codec.test.ts compares them),
 * made with Buffer: the official encoder builds a string per byte first, 1.6 % of the proxy's
 * CPU at 32 payments in flight. What they receive is decoded here: the same strict
 * alphabet as the official decoders, but through a bounded JSON parser, because these headers
 * come from upstreams and external signers the proxy does not trust (the official decoders
 * call JSON.parse on whatever they get).
 */

/**
 * One requirement of a 402, as the proxy reads it for its checks (pinned terms, price), with the
 * server's own JSON object beside it. The typed fields are derived from `raw` and never written
 * back: `raw` is what goes back to the server as `accepted`, byte-for-byte the same JSON value.
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
  /** The requirement exactly as the server sent it: every field, unknown ones included. */
  raw: Readonly<Record<string, unknown>>;
}

/** The fields of a payment JSON the proxy and the emulator read (every form is a subset). */
export interface PaymentPayload {
  x402Version: number;
  scheme?: string;
  network?: string;
  resource?: unknown;
  accepted?: Record<string, unknown>;
  payload: { transaction: string };
  extensions?: unknown;
}

export interface PaymentReceipt {
  success: boolean;
  transaction: string;
  network: string;
  payer: string;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The payment header (`X-PAYMENT` / `PAYMENT-SIGNATURE`), in every form (stoka's v1 body forms too). */
export function encodePaymentHeader(payload: Record<string, unknown>): string {
  return encodeBase64Json(payload);
}

/** `PAYMENT-REQUIRED`, as an x402 v2 server sends it (the emulator's header form). */
export function encodeRequiredHeader(required: Record<string, unknown>): string {
  return encodeBase64Json(required);
}

/** `PAYMENT-RESPONSE` / `X-PAYMENT-RESPONSE`: the settlement receipt. */
export function encodeReceiptHeader(receipt: PaymentReceipt): string {
  return encodeBase64Json(receipt);
}

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
export function requirementPrice(req: Pick<PaymentRequirement, "amount" | "maxAmountRequired">) {
  return req.amount ?? req.maxAmountRequired;
}

export function isPaymentReceipt(value: unknown): value is PaymentReceipt {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return typeof r.success === "boolean" && typeof r.transaction === "string";
}
