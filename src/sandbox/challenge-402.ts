import { encodeRequiredHeader } from "../x402/payment-header.js";
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
 * The one requirement this emulator issues for a quote, in the form's own shape. It is computed
 * the same way for the 402 and for the paid retry, so the retry's `accepted` can be compared
 * with it (strict mode) the way official x402 servers compare it with theirs. `extras` are
 * added as they are (the `requirementExtras` switch: unknown fields a client must echo).
 */
export function issuedRequirement(
  form: ChallengeForm,
  q: Quote,
  extras: Readonly<Record<string, unknown>> = {},
): Record<string, unknown> {
  const price = q.price.toString();
  const extra = { areFeesSponsored: true };
  if (form === "x402v2") {
    return {
      scheme: "exact",
      network: q.network,
      asset: q.asset,
      amount: price,
      payTo: q.payTo,
      maxTimeoutSeconds: q.maxTimeoutSeconds,
      extra,
      ...extras,
    };
  }
  return {
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
    ...extras,
  };
}

/**
 * A 402 in one of the three documented forms (docs/wire-protocol.md "The three 402 forms"):
 * stoka = body with x402Version 2; x402v1 = body with x402Version 1; x402v2 = PAYMENT-REQUIRED header.
 */
export function buildChallenge(
  form: ChallengeForm,
  q: Quote,
  error?: string,
  malformed = false,
  extras: Readonly<Record<string, unknown>> = {},
): ChallengeResponse {
  const err = error === undefined ? {} : { error };
  if (malformed) {
    return form === "x402v2"
      ? { status: 402, headers: { "payment-required": "%%not-base64%%" }, json: { ...err } }
      : { status: 402, headers: {}, json: { x402Version: 2, ...err, accepts: "pay me, somehow" } };
  }
  const requirement = issuedRequirement(form, q, extras);
  if (form === "x402v2") {
    const required = {
      x402Version: 2,
      ...err,
      resource: { url: q.resourceUrl, description: q.description, mimeType: q.mimeType },
      accepts: [requirement],
    };
    return { status: 402, headers: { "payment-required": encodeRequiredHeader(required) }, json: { ...err } };
  }
  return {
    status: 402,
    headers: {},
    json: { x402Version: form === "x402v1" ? 1 : 2, ...err, accepts: [requirement] },
  };
}
