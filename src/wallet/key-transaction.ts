import { ExactStellarScheme } from "@x402/stellar/exact/client";
import { createEd25519Signer } from "@x402/stellar";
import { Keypair } from "@stellar/stellar-sdk";
import type { PaymentRequirements } from "@x402/core/types";
import { StokaProxyError } from "../errors.js";
import type { PaymentRequirement } from "../x402/payment-header.js";
import { requirementPrice } from "../x402/payment-header.js";
import type { StellarNetwork } from "../stellar/networks.js";

/** The typed fields of a requirement that decide the transfer. */
export type TransferTerms = Omit<PaymentRequirement, "raw">;

export interface KeySignerOptions {
  /** The wallet's `S…` seed. Held in memory only; never logged. */
  secret: string;
  network: StellarNetwork;
  /** Soroban RPC URL; must be HTTPS (the SDK builds clients without allowHttp). */
  rpcUrl: string;
  /** Upper bound on creating one payment (RPC simulation twice + signing). */
  timeoutMs: number;
}

/**
 * Builds the transaction of an x402 "exact" payment with the wallet key, through the official
 * `@x402/stellar` client scheme: a `transfer(from, payTo, amount)` invocation whose auth entry
 * is signed by the key. The payment header around it is KeyPaymentSigner's (key-payment-signer.ts).
 */
export class KeyTransactionBuilder {
  readonly address: string;
  private readonly scheme: ExactStellarScheme;

  constructor(private readonly options: KeySignerOptions) {
    let keypair: Keypair;
    try {
      keypair = Keypair.fromSecret(options.secret);
    } catch {
      throw new StokaProxyError(
        "config_invalid",
        "the wallet secret is not a valid Stellar seed",
        "set STELLAR_SECRET (or the secret file) to the wallet's S… seed",
      );
    }
    this.address = keypair.publicKey();
    this.scheme = new ExactStellarScheme(createEd25519Signer(options.secret, options.network), {
      url: options.rpcUrl,
    });
  }

  /**
   * Returns the base64 transaction envelope to put in `payload.transaction`. The scheme gets a
   * requirement made for it (`amount` = the price, whichever field carried it); that object only
   * drives the transaction and is never sent: the header echoes the server's own requirement.
   */
  async createTransaction(req: TransferTerms): Promise<string> {
    const amount = requirementPrice(req);
    const requirements = {
      scheme: req.scheme,
      network: req.network,
      asset: req.asset,
      amount,
      payTo: req.payTo,
      maxTimeoutSeconds: req.maxTimeoutSeconds,
      extra: req.extra ?? {},
    } as PaymentRequirements;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StokaProxyError(
              "payment_timeout",
              `creating the payment took longer than ${this.options.timeoutMs} ms`,
              "check that the Soroban RPC answers (rpc URL and its CA)",
            ),
          ),
        this.options.timeoutMs,
      );
    });
    try {
      const payload = await Promise.race([this.scheme.createPaymentPayload(2, requirements), timeout]);
      const tx = (payload.payload as { transaction?: unknown }).transaction;
      if (typeof tx !== "string") throw new Error("the x402 scheme returned no transaction");
      return tx;
    } catch (err) {
      if (err instanceof StokaProxyError) throw err;
      throw new StokaProxyError(
        "payment_create_failed",
        `could not create the payment: ${(err as Error).message}`,
        "check the Soroban RPC URL, the wallet's USDC balance and trustline",
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
    }
  }
}
