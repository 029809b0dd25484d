import { createHash } from "node:crypto";
import { Address, xdr } from "@stellar/stellar-sdk";

/**
 * Work the payment path repeated per payment on the same few values, done once: a network's id
 * (sha256 of its passphrase, through the SDK's pure-JS sha256) and the XDR address of a G… or
 * C… string (a strkey decode with its CRC16, in JS). Each was 1–2 % of the proxy's CPU at
 * 32 payments in flight (bench/README.md). The XDR objects handed out are shared: callers wrap
 * them and never change them.
 */
const networkIds = new Map<string, Buffer>();
const scAddresses = new Map<string, xdr.ScAddress>();
/** Bounded: a wallet pays a handful of payees, assets and networks; a hostile 402 names new ones. */
const MAX_ADDRESSES = 256;

export function networkId(passphrase: string): Buffer {
  let id = networkIds.get(passphrase);
  if (!id) {
    id = createHash("sha256").update(passphrase, "utf8").digest();
    if (networkIds.size < 16) networkIds.set(passphrase, id);
  }
  return Buffer.from(id);
}

/** The ScAddress of a strkey (throws as Address.fromString does for one that is not valid). */
export function scAddressOf(strkey: string): xdr.ScAddress {
  let a = scAddresses.get(strkey);
  if (!a) {
    a = Address.fromString(strkey).toScAddress();
    if (scAddresses.size >= MAX_ADDRESSES) scAddresses.clear();
    scAddresses.set(strkey, a);
  }
  return a;
}

/** `nativeToScVal(strkey, { type: "address" })`, from the cached address. */
export function scValAddress(strkey: string): xdr.ScVal {
  return xdr.ScVal.scvAddress(scAddressOf(strkey));
}

/**
 * The hash of an envelope-type-TX transaction with no signatures, from its bytes: sha256 of
 * TransactionSignaturePayload = networkId ‖ ENVELOPE_TYPE_TX ‖ Transaction, and the envelope
 * is ENVELOPE_TYPE_TX ‖ Transaction ‖ signatures (an empty list: four zero bytes), so the
 * payload is the network id and the envelope without its last four bytes. The SDK's
 * `tx.hash()` re-encodes the transaction and hashes in JS. Null for any other envelope.
 */
export function unsignedTransactionHash(
  envelope: Buffer,
  signatures: number,
  passphrase: string,
): string | null {
  if (signatures !== 0 || envelope.length < 8) return null;
  if (envelope.readUInt32BE(0) !== xdr.EnvelopeType.envelopeTypeTx().value) return null;
  if (envelope.readUInt32BE(envelope.length - 4) !== 0) return null;
  return createHash("sha256")
    .update(networkId(passphrase))
    .update(envelope.subarray(0, envelope.length - 4))
    .digest("hex");
}
