import { Address, xdr } from "@stellar/stellar-sdk";
import { TransferDecodeError, decodeTransfer, invocationFor } from "../stellar/transfer-transaction.js";
import type { TransferCall } from "../stellar/transfer-transaction.js";
import { jsonEqual } from "./json-equal.js";
import { decodeBase64Json, requirementPrice } from "./payment-header.js";
import type { PaymentOffer } from "./payment-payload.js";

/**
 * Before a payment header leaves the proxy, check that it is the payment that was agreed: the
 * version the challenge names, `accepted` (when present) equal to the offered requirement, a
 * transaction that pays exactly the asset, the payee and the price, and one authorization entry
 * for exactly that transfer (the signed entry is what moves the money: one for another call
 * could be submitted by whoever receives it; its signature is the network's to check). An
 * external signer command cannot make the proxy pay someone else, more, or under terms the
 * server did not offer.
 * Decodes the header once and returns the inner transaction hash for the ledger. Pure.
 */
export type PaymentCheck =
  | {
      ok: true;
      txHash: string;
      /** The authorization's `signatureExpirationLedger` (a resend must reach the facilitator before it). */
      expirationLedger: number;
    }
  | { ok: false; reason: string };

const refuse = (reason: string): PaymentCheck => ({ ok: false, reason });

export function checkPayment(header: string, offer: PaymentOffer, networkPassphrase: string): PaymentCheck {
  let decoded: unknown;
  try {
    decoded = decodeBase64Json(header.trim());
  } catch {
    return refuse("payment header is not standard base64 JSON");
  }
  if (typeof decoded !== "object" || decoded === null || Array.isArray(decoded))
    return refuse("payment header is not a JSON object");
  const p = decoded as Record<string, unknown>;
  if (p.x402Version !== offer.x402Version) {
    return refuse(
      `payment names x402Version ${JSON.stringify(p.x402Version)}, the challenge asked for ${offer.x402Version}`,
    );
  }
  if ("accepted" in p && !jsonEqual(p.accepted, offer.requirement.raw)) {
    return refuse("payment `accepted` is not the requirement the server offered");
  }
  if (offer.form === "x402v2" && !("accepted" in p)) {
    return refuse("an x402 v2 payment must carry `accepted`");
  }
  const inner = p.payload as { transaction?: unknown } | undefined;
  const tx = typeof inner === "object" && inner !== null ? inner.transaction : undefined;
  if (typeof tx !== "string") return refuse("payment header has no payload.transaction");
  const req = offer.requirement;
  try {
    const call = decodeTransfer(tx, networkPassphrase);
    if (call.contract !== req.asset)
      return refuse(`payment transfers asset ${call.contract}, not ${req.asset}`);
    if (call.to !== req.payTo) return refuse(`payment pays ${call.to}, not the agreed payee ${req.payTo}`);
    const price = requirementPrice(req);
    if (price === undefined || call.amount !== BigInt(price))
      return refuse(`payment amount ${call.amount} is not the price ${String(price)}`);
    const auth = authorizationMismatch(call);
    if (auth) return refuse(auth);
    const expirationLedger = (call.auth[0] as xdr.SorobanAuthorizationEntry)
      .credentials()
      .address()
      .signatureExpirationLedger();
    return { ok: true, txHash: call.txHash, expirationLedger };
  } catch (err) {
    if (err instanceof TransferDecodeError) return refuse(err.message);
    throw err;
  }
}

/** Why the transaction's authorization is not exactly one address entry for this very transfer. */
function authorizationMismatch(call: TransferCall): string | null {
  if (call.auth.length !== 1)
    return `payment carries ${call.auth.length} authorization entries, not exactly one`;
  const entry = call.auth[0] as xdr.SorobanAuthorizationEntry;
  const credentials = entry.credentials();
  if (credentials.switch() !== xdr.SorobanCredentialsType.sorobanCredentialsAddress())
    return "payment authorization does not use address credentials";
  const signer = Address.fromScAddress(credentials.address().address()).toString();
  if (signer !== call.from) return `payment authorization is for ${signer}, not the payer ${call.from}`;
  // The whole invocation, sub-invocations included, must be the transfer and nothing else.
  if (!entry.rootInvocation().toXDR().equals(invocationFor(call.call).toXDR()))
    return "payment authorization authorizes another call than the agreed transfer";
  return null;
}
