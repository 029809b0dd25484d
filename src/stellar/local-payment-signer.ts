import { buildPaymentPayload, encodeBase64Json } from "../x402/payment-header.js";
import type { PaymentRequirement } from "../x402/payment-header.js";
import type { PaymentSigner } from "../x402/signer.js";
import { LocalPaymentSigner } from "./local-signer.js";
import type { LocalSignerOptions } from "./local-signer.js";

/** The proxy's signer when it holds the wallet key: `@x402/stellar` builds and signs. */
export class LocalKeyPaymentSigner implements PaymentSigner {
  readonly kind = "local" as const;
  private readonly inner: LocalPaymentSigner;

  constructor(options: LocalSignerOptions) {
    this.inner = new LocalPaymentSigner(options);
  }

  get address(): string {
    return this.inner.address;
  }

  async sign(req: PaymentRequirement): Promise<string> {
    const tx = await this.inner.createTransaction(req);
    return encodeBase64Json(buildPaymentPayload(req, tx));
  }
}
