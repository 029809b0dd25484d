import type { Challenge, ChallengeForm } from "./challenge.js";
import type { PaymentRequirement } from "./payment-header.js";

/**
 * The payment JSON for each challenge form (docs/wire-protocol.md "The payment header"). Echo,
 * never rebuild: the chosen requirement goes back as `accepted` exactly as the server sent it,
 * and for the x402 v2 header form so do `resource` and `extensions`. x402 servers compare
 * `accepted` with their own requirement as JSON values; one added, dropped or retyped field and
 * the payment is refused. Pure.
 */

/** What a signer is asked to pay: one requirement of one challenge, with what must be echoed. */
export interface PaymentOffer {
  form: ChallengeForm;
  /** The version the payment JSON names (1 for the v1 body form, 2 otherwise). */
  x402Version: 1 | 2;
  requirement: PaymentRequirement;
  /** x402 v2 header form: PAYMENT-REQUIRED's `resource`, verbatim. */
  resource?: unknown;
  /** x402 v2 header form: PAYMENT-REQUIRED's `extensions`, verbatim. */
  extensions?: unknown;
}

export function offerFor(challenge: Challenge, requirement: PaymentRequirement): PaymentOffer {
  return {
    form: challenge.form,
    x402Version: challenge.x402Version,
    requirement,
    ...(challenge.form === "x402v2" && "resource" in challenge ? { resource: challenge.resource } : {}),
    ...(challenge.form === "x402v2" && challenge.extensions !== undefined
      ? { extensions: challenge.extensions }
      : {}),
  };
}

/**
 * - x402 v2 header form: `{x402Version: 2, resource, accepted, payload, extensions?}`, the x402 v2
 *   PaymentPayload.
 * - stoka form: `{x402Version: 2, scheme, network, accepted, payload}`: what stoka's own clients
 *   send, plus the verbatim requirement so v2 readers accept the same JSON.
 * - x402 v1 form: `{x402Version: 1, scheme, network, payload}`, the v1 PaymentPayload.
 */
export function buildPaymentPayload(offer: PaymentOffer, transaction: string): Record<string, unknown> {
  const req = offer.requirement;
  const payload = { transaction };
  switch (offer.form) {
    case "x402v2":
      return {
        x402Version: 2,
        ...("resource" in offer ? { resource: offer.resource } : {}),
        accepted: req.raw,
        payload,
        ...(offer.extensions !== undefined ? { extensions: offer.extensions } : {}),
      };
    case "stoka":
      return { x402Version: 2, scheme: req.scheme, network: req.network, accepted: req.raw, payload };
    case "x402v1":
      return { x402Version: 1, scheme: req.scheme, network: req.network, payload };
  }
}
