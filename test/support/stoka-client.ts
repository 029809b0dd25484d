import { request } from "undici";
import type { Keypair } from "@stellar/stellar-sdk";
import { KeyTransactionBuilder } from "../../src/wallet/key-transaction.js";
import type { TransferTerms } from "../../src/wallet/key-transaction.js";
import { formatStellarAuthorization, signChallengeMessage } from "../../src/stellar/wallet-auth.js";
import { parseChallenge } from "../../src/x402/challenge.js";
import { decodeBase64Json, encodeBase64Json } from "../../src/x402/payment-header.js";
import type { PaymentRequirement } from "../../src/x402/payment-header.js";
import { buildPaymentPayload, offerFor } from "../../src/x402/payment-payload.js";
import type { PaymentOffer } from "../../src/x402/payment-payload.js";
import type { StellarNetwork } from "../../src/stellar/networks.js";

/**
 * A small stoka client for tests: talks straight to a server (the emulator) and pays its 402s
 * with the official `@x402/stellar` client scheme against the fake RPC.
 */
export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T = Record<string, unknown>>(): T;
}

export interface SendInit {
  headers?: Record<string, string>;
  body?: Buffer | string;
}

export async function send(method: string, url: string, init: SendInit = {}): Promise<RawResponse> {
  const res = await request(url, { method: method as "GET", headers: init.headers, body: init.body });
  const body = Buffer.from(await res.body.arrayBuffer());
  return {
    status: res.statusCode,
    headers: res.headers,
    body,
    json: <T>() => JSON.parse(body.toString("utf8")) as T,
  };
}

export class TestStokaClient {
  readonly signer: KeyTransactionBuilder;

  constructor(
    readonly baseUrl: string,
    readonly wallet: Keypair,
    rpcUrl: string,
    network: StellarNetwork = "stellar:testnet",
  ) {
    this.signer = new KeyTransactionBuilder({ secret: wallet.secret(), network, rpcUrl, timeoutMs: 10_000 });
  }

  get address(): string {
    return this.wallet.publicKey();
  }

  /**
   * Creates the payment header value for an offer (base64 JSON), in the offer's form. `override`
   * changes only the transaction (to build bad payments); the header still echoes the offer.
   */
  async paymentFor(offer: PaymentOffer, override: Partial<TransferTerms> = {}): Promise<string> {
    const tx = await this.signer.createTransaction({ ...offer.requirement, ...override });
    return encodeBase64Json(buildPaymentPayload(offer, tx));
  }

  /** The challenge at `path` (a 402 is expected) and the offer for its first requirement. */
  async offer(method: string, path: string, init: SendInit = {}): Promise<PaymentOffer> {
    const challenge = await send(method, this.baseUrl + path, init);
    if (challenge.status !== 402)
      throw new Error(`expected 402, got ${challenge.status}: ${challenge.body.toString()}`);
    return offerOf(challenge);
  }

  /** Sends, and on a 402 pays its first requirement once and retries with the right header. */
  async paid(
    method: string,
    path: string,
    init: SendInit = {},
  ): Promise<{ challenge: RawResponse; paid: RawResponse; payment: string }> {
    const challenge = await send(method, this.baseUrl + path, init);
    if (challenge.status !== 402)
      throw new Error(`expected 402, got ${challenge.status}: ${challenge.body.toString()}`);
    const offer = offerOf(challenge);
    const payment = await this.paymentFor(offer);
    const paid = await send(method, this.baseUrl + path, {
      ...init,
      headers: { ...init.headers, [headerFor(offer)]: payment },
    });
    return { challenge, paid, payment };
  }

  /** Gets a challenge for `audience`, signs it and sends the request with Authorization: Stellar. */
  async signed(method: string, path: string, audience: string, init: SendInit = {}): Promise<RawResponse> {
    const authorization = await this.authorization(audience);
    return send(method, this.baseUrl + path, { ...init, headers: { ...init.headers, authorization } });
  }

  async authorization(audience: string, signer: Keypair = this.wallet): Promise<string> {
    const c = await send("POST", `${this.baseUrl}/v1/auth/challenge`, { body: JSON.stringify({ audience }) });
    if (c.status !== 200) throw new Error(`challenge refused: ${c.status} ${c.body.toString()}`);
    const { challenge_id, message } = c.json<{ challenge_id: string; message: string }>();
    return formatStellarAuthorization({
      publicKey: signer.publicKey(),
      challengeId: challenge_id,
      signatureHex: signChallengeMessage(signer, message),
    });
  }
}

/** The offer for the first requirement of a 402 response. */
export function offerOf(res: RawResponse): PaymentOffer {
  const parsed = parseChallenge(res.headers, res.body.toString("utf8"));
  if (!parsed.ok) throw new Error(parsed.reason);
  return offerFor(parsed.challenge, parsed.challenge.accepts[0] as PaymentRequirement);
}

/** The request header a payment for `offer` travels in. */
export function headerFor(offer: PaymentOffer): "payment-signature" | "x-payment" {
  return offer.form === "x402v2" ? "payment-signature" : "x-payment";
}

export function decodeReceipt(value: string | string[] | undefined): Record<string, unknown> {
  if (typeof value !== "string") throw new Error("no receipt header");
  return decodeBase64Json(value) as Record<string, unknown>;
}
