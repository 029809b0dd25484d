import { encodePaymentHeader } from "../x402/payment-header.js";
import { buildPaymentPayload } from "../x402/payment-payload.js";
import type { PaymentOffer } from "../x402/payment-payload.js";
import type { PaymentSigner } from "./payment-signer.js";
import { KeyTransactionBuilder } from "./key-transaction.js";
import type { KeySignerOptions } from "./key-transaction.js";

/**
 * The payment signer by local key (STELLAR_SECRET): KeyTransactionBuilder makes and signs the
 * transaction from the typed requirement; the header echoes the server's requirement verbatim
 * (docs/wire-protocol.md, Echo, never rebuild).
 */
export class KeyPaymentSigner implements PaymentSigner {
  readonly kind = "local" as const;
  private readonly inner: KeyTransactionBuilder;

  constructor(options: KeySignerOptions) {
    this.inner = new KeyTransactionBuilder(options);
  }

  get address(): string {
    return this.inner.address;
  }

  /** Drops the prepared template this kind of payment was built from (key-transaction.ts). */
  forgetPrepared(offer: PaymentOffer): void {
    this.inner.forgetPrepared(offer.requirement);
  }

  get preparedTemplates(): number {
    return this.inner.preparedTemplates;
  }

  async sign(offer: PaymentOffer): Promise<string> {
    const tx = await this.inner.createTransaction(offer.requirement);
    return encodePaymentHeader(buildPaymentPayload(offer, tx));
  }
}
