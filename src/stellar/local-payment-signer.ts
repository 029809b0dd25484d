import { encodeBase64Json } from "../x402/payment-header.js";
import { buildPaymentPayload } from "../x402/payment-payload.js";
import type { PaymentOffer } from "../x402/payment-payload.js";
import type { PaymentSigner } from "../x402/signer.js";
import { LocalPaymentSigner } from "./local-signer.js";
import type { LocalSignerOptions } from "./local-signer.js";

/**
 * The proxy's signer when it holds the wallet key: `@x402/stellar` builds and signs the
 * transaction from the typed requirement; the header echoes the server's requirement verbatim.
 */
export class LocalKeyPaymentSigner implements PaymentSigner {
  readonly kind = "local" as const;
  private readonly inner: LocalPaymentSigner;

  constructor(options: LocalSignerOptions) {
    this.inner = new LocalPaymentSigner(options);
  }

  get address(): string {
    return this.inner.address;
  }

  async sign(offer: PaymentOffer): Promise<string> {
    const tx = await this.inner.createTransaction(offer.requirement);
    return encodeBase64Json(buildPaymentPayload(offer, tx));
  }
}
