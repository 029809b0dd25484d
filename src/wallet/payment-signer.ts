import type { PaymentOffer } from "../x402/payment-payload.js";

/**
 * Anything that turns a chosen requirement into a payment header value (base64 JSON): the
 * local key (key-payment-signer.ts) or the X_PAYMENT_CMD command (command-payment-signer.ts).
 */
export interface PaymentSigner {
  /** `local` holds the key; `command` runs X_PAYMENT_CMD. */
  readonly kind: "local" | "command";
  /** The paying wallet's G-address, when known (needed for X-Stoka-Owner). */
  readonly address: string | undefined;
  /** The header value to send, in the shape `offer.form` calls for (x402/payment-payload.ts). */
  sign(offer: PaymentOffer): Promise<string>;
  /**
   * The server refused a payment signed for `offer`: whatever was cached to build it (a
   * prepared template, wallet/prepare-cache.ts) is dropped so the next payment starts afresh.
   */
  forgetPrepared?(offer: PaymentOffer): void;
}
