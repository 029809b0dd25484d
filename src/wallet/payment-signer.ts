import type { PaymentOffer } from "../x402/payment-payload.js";

/**
 * What the request being paid is, for a signer that decides for itself (remote-signer.ts: the
 * signer role re-checks host, terms and its own budgets from these, docs/security.md, Keyless
 * sidecars). Local signers ignore it.
 */
export interface SignContext {
  /** This proxy's payment id (its own ledger row), sent so the two ledgers can be joined. */
  paymentId: string;
  requestId: string;
  method: string;
  /** The paid host as the app addressed it, and the URL the request goes to. */
  host: string;
  port: number;
  url: string;
  /** The 402 exactly as read: its PAYMENT-REQUIRED header (if any) and its body. */
  challenge: { paymentRequired?: string; body: string };
}

/** How a payment signed by a remote signer ended, as this proxy's ledger closed it. */
export interface SignedOutcome {
  state: "settled" | "rejected" | "failed" | "indeterminate";
  tx: string | null;
  status: number | null;
  reason: string | null;
}

/**
 * Anything that turns a chosen requirement into a payment header value (base64 JSON): the
 * local key (key-payment-signer.ts), the X_PAYMENT_CMD command (command-payment-signer.ts), or
 * the team gateway in its signer role (remote-signer.ts).
 */
export interface PaymentSigner {
  /** `local` holds the key; `command` runs X_PAYMENT_CMD; `remote` asks the signer role. */
  readonly kind: "local" | "command" | "remote";
  /** The paying wallet's G-address, when known (needed for X-Stoka-Owner). */
  readonly address: string | undefined;
  /** The header value to send, in the shape `offer.form` calls for (x402/payment-payload.ts). */
  sign(offer: PaymentOffer, context?: SignContext): Promise<string>;
  /**
   * The payment this proxy signed through `sign` (same `context.paymentId`) is closed: a remote
   * signer is told, so its own ledger closes it too. Never throws; bounded.
   */
  reportOutcome?(paymentId: string, outcome: SignedOutcome): Promise<void>;
  /**
   * The server refused a payment signed for `offer`: whatever was cached to build it (a
   * prepared template, wallet/prepare-cache.ts) is dropped so the next payment starts afresh.
   */
  forgetPrepared?(offer: PaymentOffer): void;
}
