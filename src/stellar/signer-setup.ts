import type { ProxyConfig } from "../config/config.js";
import { CommandPaymentSigner } from "../x402/command-signer.js";
import type { PaymentSigner } from "../x402/signer.js";
import { LocalKeyPaymentSigner } from "./local-payment-signer.js";
import { CommandMessageSigner, LocalMessageSigner } from "./message-signer.js";
import type { MessageSigner } from "./message-signer.js";
import { installSdkHttpGuard, trustExtraCertificates } from "./sdk-http-guard.js";

/**
 * Picks the payment signer from config: the local key when the proxy holds it, else the
 * external command, else none (every 402 is then refused with `no_signer`).
 */
export function createPaymentSigner(config: ProxyConfig): PaymentSigner | undefined {
  const w = config.wallet;
  if (w.secret) {
    installSdkHttpGuard({ ledgerCloseSeconds: w.ledgerCloseSeconds, timeoutMs: w.signingTimeoutMs });
    if (w.rpcCaPems.length > 0) trustExtraCertificates(w.rpcCaPems);
    return new LocalKeyPaymentSigner({
      secret: w.secret,
      network: config.network,
      rpcUrl: w.rpcUrl,
      timeoutMs: w.signingTimeoutMs,
    });
  }
  if (w.paymentCommand)
    return new CommandPaymentSigner(w.paymentCommand, w.paymentCommandTimeoutMs, w.address);
  return undefined;
}

/** The wallet-auth signer: the local key, else the sign command (with the configured address). */
export function createMessageSigner(config: ProxyConfig): MessageSigner | undefined {
  const w = config.wallet;
  if (w.secret) return new LocalMessageSigner(w.secret);
  if (w.signCommand && w.address)
    return new CommandMessageSigner(w.signCommand, w.signCommandTimeoutMs, w.address);
  return undefined;
}
