import type { KeyObject } from "node:crypto";
import { ExactStellarScheme } from "@x402/stellar/exact/client";
import { createEd25519Signer } from "@x402/stellar";
import type { ClientStellarSigner } from "@x402/stellar";
import { Keypair, hash, nativeToScVal, xdr } from "@stellar/stellar-sdk";
import type { PaymentRequirements } from "@x402/core/types";
import { StokaProxyError } from "../errors.js";
import type { PaymentRequirement } from "../x402/payment-header.js";
import { requirementPrice } from "../x402/payment-header.js";
import { NETWORKS } from "../stellar/networks.js";
import type { StellarNetwork } from "../stellar/networks.js";
import { invocationFor } from "../stellar/transfer-transaction.js";
import { scAddressOf, scValAddress } from "../stellar/xdr-cache.js";
import {
  PrepareCache,
  ed25519SigningKey,
  buildWarmTransaction,
  estimatedLedger,
  templateFrom,
  templateKey,
} from "./prepare-cache.js";

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
  /** Build payments of a kind already paid from a template, locally (prepare-cache.ts); default on. */
  prepareCache?: boolean;
  /** The ledger close time the expiration ledger is counted with (wallet.ledger_close_seconds). */
  ledgerCloseSeconds?: number;
}

/**
 * Builds the transaction of an x402 "exact" payment with the wallet key, through the official
 * `@x402/stellar` client scheme: a `transfer(from, payTo, amount)` invocation whose auth entry
 * is signed by the key. The payment header around it is KeyPaymentSigner's (key-payment-signer.ts).
 */
export class KeyTransactionBuilder {
  readonly address: string;
  private readonly signer: ClientStellarSigner;
  private readonly keypair: Keypair;
  private readonly signingKey: KeyObject;
  private readonly cache: PrepareCache | undefined;
  private readonly closeSeconds: number;

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
    this.keypair = keypair;
    this.signingKey = ed25519SigningKey(keypair);
    this.address = keypair.publicKey();
    this.signer = createEd25519Signer(options.secret, options.network);
    this.cache = options.prepareCache === false ? undefined : new PrepareCache();
    this.closeSeconds = options.ledgerCloseSeconds ?? 5;
  }

  /** Payment templates kept (prepare-cache.ts); 0 with the cache off. */
  get preparedTemplates(): number {
    return this.cache?.size ?? 0;
  }

  /**
   * The server refused a payment of this kind: the template it may have been built from is
   * dropped, so the next payment asks the RPC again (the refused request is not paid again).
   */
  forgetPrepared(req: TransferTerms): void {
    this.cache?.forget(this.keyFor(req, requirementPrice(req) ?? ""));
  }

  private keyFor(req: TransferTerms, amount: string): string {
    return templateKey({
      payer: this.address,
      payTo: req.payTo,
      asset: req.asset,
      network: req.network,
      amount,
    });
  }

  /**
   * The scheme for one payment, its signer limited to that payment: the authorization entries
   * it is asked to sign come from the Soroban RPC's simulation, and an RPC that answered with
   * another invocation (a transfer elsewhere, of more) would get the wallet's signature on it.
   * Only the transfer agreed, on the configured network, is signed.
   */
  private schemeFor(expected: xdr.SorobanAuthorizedInvocation): ExactStellarScheme {
    const passphrase = NETWORKS[this.options.network].passphrase;
    const signer = this.signer;
    return new ExactStellarScheme(
      {
        address: signer.address,
        signAuthEntry: async (preimage, opts) => {
          const why = preimageMismatch(preimage, expected, passphrase);
          if (why) {
            throw new StokaProxyError(
              "payment_create_failed",
              `the Soroban RPC asked the wallet to sign ${why}; nothing was signed`,
              "check wallet.rpc_url: it must be a Soroban RPC you trust",
            );
          }
          return signer.signAuthEntry(preimage, opts);
        },
      },
      { url: this.options.rpcUrl },
    );
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
      const call = new xdr.InvokeContractArgs({
        contractAddress: scAddressOf(req.asset),
        functionName: "transfer",
        args: [scValAddress(this.address), scValAddress(req.payTo), nativeToScVal(amount, { type: "i128" })],
      });
      const expected = invocationFor(call);
      const passphrase = NETWORKS[this.options.network].passphrase;
      const key = this.keyFor(req, amount ?? "");
      const ledgersValid = Math.ceil(req.maxTimeoutSeconds / this.closeSeconds);
      // Only what the cold path has checked once for this kind: a positive integer amount, fees sponsored.
      const warmable = /^[1-9][0-9]*$/.test(amount ?? "") && req.extra?.areFeesSponsored === true;
      const template = warmable ? this.cache?.get(key) : undefined;
      if (template) {
        const nowMs = Date.now();
        const warm = buildWarmTransaction({
          template,
          payer: this.keypair,
          signingKey: this.signingKey,
          invocation: expected,
          call,
          expirationLedger: estimatedLedger(template, nowMs, this.closeSeconds) + ledgersValid,
          networkPassphrase: passphrase,
          nowMs,
        });
        if (warm) return warm;
        this.cache?.forget(key);
      }
      const startedMs = Date.now();
      const scheme = this.schemeFor(expected);
      const payload = await Promise.race([scheme.createPaymentPayload(2, requirements), timeout]);
      const tx = (payload.payload as { transaction?: unknown }).transaction;
      if (typeof tx !== "string") throw new Error("the x402 scheme returned no transaction");
      if (this.cache) {
        // The scheme counted the expiration from the ledger it fetched: that ledger, recovered.
        const expiration = expirationOf(tx);
        const made = expiration === null ? null : templateFrom(tx, expiration - ledgersValid, startedMs);
        if (made) this.cache.remember(key, made);
      }
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

/** Why a Soroban authorization preimage is not for `expected` on this network; null when it is. */
export function preimageMismatch(
  preimageBase64: string,
  expected: xdr.SorobanAuthorizedInvocation,
  networkPassphrase: string,
): string | null {
  let preimage: xdr.HashIdPreimage;
  try {
    preimage = xdr.HashIdPreimage.fromXDR(preimageBase64, "base64");
  } catch {
    return "something that is not an authorization preimage";
  }
  if (preimage.switch() !== xdr.EnvelopeType.envelopeTypeSorobanAuthorization())
    return "something that is not a Soroban authorization";
  const auth = preimage.sorobanAuthorization();
  if (!auth.networkId().equals(hash(Buffer.from(networkPassphrase, "utf8"))))
    return "an authorization for another network";
  if (!auth.invocation().toXDR().equals(expected.toXDR()))
    return "an authorization for another call than the agreed transfer";
  return null;
}

/** The signature expiration ledger of the one auth entry of a payment transaction, else null. */
function expirationOf(envelopeBase64: string): number | null {
  try {
    const env = xdr.TransactionEnvelope.fromXDR(envelopeBase64, "base64");
    const op = env.v1().tx().operations()[0];
    const auth = op?.body().invokeHostFunctionOp().auth() ?? [];
    const entry = auth[0];
    if (auth.length !== 1 || !entry) return null;
    return entry.credentials().address().signatureExpirationLedger();
  } catch {
    return null;
  }
}
