import type { WalletOptions } from "../config/config.js";
import type { StellarNetwork } from "../stellar/networks.js";
import { installSdkHttpGuard, trustExtraCertificates } from "../stellar/sdk-http-guard.js";
import { CommandPaymentSigner } from "./command-payment-signer.js";
import { KeyPaymentSigner } from "./key-payment-signer.js";
import { CommandMessageSigner, KeyMessageSigner } from "./message-signer.js";
import type { MessageSigner } from "./message-signer.js";
import type { PaymentSigner } from "./payment-signer.js";
import { RemoteMessageSigner, RemotePaymentSigner, RemoteSignerClient } from "./remote-signer.js";

/** One client per remote_signer setting: the payment and message signers share what they learn (the address). */
const remoteClients = new WeakMap<object, RemoteSignerClient>();
function remoteClient(wallet: WalletOptions): RemoteSignerClient | undefined {
  const options = wallet.remoteSigner;
  if (!options) return undefined;
  let client = remoteClients.get(options);
  if (!client) {
    client = new RemoteSignerClient(options, wallet.address);
    remoteClients.set(options, client);
    void client.learnAddress();
  }
  return client;
}

/**
 * Picks the signers from the wallet options (docs/configuration.md, Wallet):
 *
 *   both:                 wallet.remote_signer           ─▶ RemotePaymentSigner, RemoteMessageSigner
 *                                                           (a keyless sidecar: config refuses a seed beside it)
 *   payments:             the local key (STELLAR_SECRET) ─▶ KeyPaymentSigner
 *                         else X_PAYMENT_CMD            ─▶ CommandPaymentSigner
 *                         else none: every 402 is refused with `no_signer`
 *   wallet-auth messages: the local key                 ─▶ KeyMessageSigner
 *                         else sign_command + address   ─▶ CommandMessageSigner
 *                         else none: wallet-signed routes answer `wallet_auth_failed`
 */
export function createPaymentSigner(
  wallet: WalletOptions,
  network: StellarNetwork,
  warn?: (msg: string, facts: Record<string, unknown>) => void,
): PaymentSigner | undefined {
  const remote = remoteClient(wallet);
  if (remote) return new RemotePaymentSigner(remote, warn);
  if (wallet.secret) {
    installSdkHttpGuard({
      ledgerCloseSeconds: wallet.ledgerCloseSeconds,
      timeoutMs: wallet.signingTimeoutMs,
    });
    if (wallet.rpcCaPems.length > 0) trustExtraCertificates(wallet.rpcCaPems);
    return new KeyPaymentSigner({
      secret: wallet.secret,
      network,
      rpcUrl: wallet.rpcUrl,
      timeoutMs: wallet.signingTimeoutMs,
      prepareCache: wallet.prepareCache,
      ledgerCloseSeconds: wallet.ledgerCloseSeconds,
    });
  }
  if (wallet.paymentCommand)
    return new CommandPaymentSigner(wallet.paymentCommand, wallet.paymentCommandTimeoutMs, wallet.address);
  return undefined;
}

/** The wallet-auth signer: the local key, else the sign command (with the configured address). */
export function createMessageSigner(wallet: WalletOptions): MessageSigner | undefined {
  const remote = remoteClient(wallet);
  if (remote) return new RemoteMessageSigner(remote);
  if (wallet.secret) return new KeyMessageSigner(wallet.secret);
  if (wallet.signCommand && wallet.address)
    return new CommandMessageSigner(wallet.signCommand, wallet.signCommandTimeoutMs, wallet.address);
  return undefined;
}
