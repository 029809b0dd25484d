import { encodeBase64Json } from "../x402/payment-header.js";
import type { ChallengeForm } from "./switches.js";

/** What one 402 asks for. */
export interface Quote {
  price: bigint;
  network: string;
  asset: string;
  payTo: string;
  maxTimeoutSeconds: number;
  resourceUrl: string;
  description: string;
  mimeType: string;
}

export interface ChallengeResponse {
  status: 402;
  headers: Record<string, string>;
  json: Record<string, unknown>;
}

/**
 * A 402 in one of the three documented forms (stoka-protocol.md "Paid routes"):
 * stoka = body with x402Version 2; x402v1 = body with x402Version 1; x402v2 = PAYMENT-REQUIRED header.
 */
export function buildChallenge(
  form: ChallengeForm,
  q: Quote,
  error?: string,
  malformed = false,
): ChallengeResponse {
  const err = error === undefined ? {} : { error };
  if (malformed) {
    return form === "x402v2"
      ? { status: 402, headers: { "payment-required": "%%not-base64%%" }, json: { ...err } }
      : { status: 402, headers: {}, json: { x402Version: 2, ...err, accepts: "pay me, somehow" } };
  }
  const price = q.price.toString();
  const extra = { areFeesSponsored: true };
  if (form === "x402v2") {
    const required = {
      x402Version: 2,
      ...err,
      resource: { url: q.resourceUrl, description: q.description, mimeType: q.mimeType },
      accepts: [
        {
          scheme: "exact",
          network: q.network,
          asset: q.asset,
          amount: price,
          payTo: q.payTo,
          maxTimeoutSeconds: q.maxTimeoutSeconds,
          extra,
        },
      ],
    };
    return { status: 402, headers: { "payment-required": encodeBase64Json(required) }, json: { ...err } };
  }
  const requirement = {
    scheme: "exact",
    network: q.network,
    maxAmountRequired: price,
    ...(form === "stoka" ? { amount: price } : {}),
    resource: q.resourceUrl,
    description: q.description,
    mimeType: q.mimeType,
    payTo: q.payTo,
    maxTimeoutSeconds: q.maxTimeoutSeconds,
    asset: q.asset,
    extra,
  };
  return {
    status: 402,
    headers: {},
    json: { x402Version: form === "x402v1" ? 1 : 2, ...err, accepts: [requirement] },
  };
}
