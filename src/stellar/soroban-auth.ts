import { Address, Keypair, StrKey, hash, xdr } from "@stellar/stellar-sdk";

/**
 * The hash a Soroban address-credentials authorization entry signs:
 * sha256(HashIdPreimage ENVELOPE_TYPE_SOROBAN_AUTHORIZATION {networkId, nonce, expiration, invocation}).
 * (CAP-46-11.)
 */
export function authorizationPreimageHash(
  networkPassphrase: string,
  nonce: xdr.Int64,
  signatureExpirationLedger: number,
  invocation: xdr.SorobanAuthorizedInvocation,
): Buffer {
  const preimage = xdr.HashIdPreimage.envelopeTypeSorobanAuthorization(
    new xdr.HashIdPreimageSorobanAuthorization({
      networkId: hash(Buffer.from(networkPassphrase, "utf8")),
      nonce,
      signatureExpirationLedger,
      invocation,
    }),
  );
  return hash(preimage.toXDR());
}

export interface AuthEntryExpectations {
  networkPassphrase: string;
  /** G-address that must have signed (the transfer's `from`). */
  signer: string;
  /** The root invocation the entry must authorize, exactly, with no sub-invocations. */
  invocation: xdr.SorobanAuthorizedInvocation;
  /** The current ledger: the entry must not have expired. */
  currentLedger: number;
  /** Optional upper bound on the signature expiration ledger. */
  maxExpirationLedger?: number;
}

export type AuthEntryCheck =
  { ok: true; nonce: string; expirationLedger: number } | { ok: false; reason: string };

/**
 * Checks one address-credentials auth entry the way the Soroban host does before it lets a
 * contract call `require_auth` succeed: address, invocation, expiration and Ed25519 signature.
 * Nonce replay is the caller's job (it owns the record of used nonces).
 */
export function checkAuthEntry(
  entry: xdr.SorobanAuthorizationEntry,
  want: AuthEntryExpectations,
): AuthEntryCheck {
  const credentials = entry.credentials();
  if (credentials.switch() !== xdr.SorobanCredentialsType.sorobanCredentialsAddress()) {
    return { ok: false, reason: "authorization entry does not use address credentials" };
  }
  const creds = credentials.address();
  const address = Address.fromScAddress(creds.address()).toString();
  if (address !== want.signer) {
    return { ok: false, reason: `authorization entry is for ${address}, not for the payer ${want.signer}` };
  }
  const root = entry.rootInvocation();
  if (root.subInvocations().length !== 0) {
    return { ok: false, reason: "authorization entry carries sub-invocations" };
  }
  if (!root.toXDR().equals(want.invocation.toXDR())) {
    return { ok: false, reason: "authorization entry does not authorize this exact transfer" };
  }
  const expiration = creds.signatureExpirationLedger();
  if (expiration < want.currentLedger) {
    return {
      ok: false,
      reason: `authorization expired at ledger ${expiration} (current ${want.currentLedger})`,
    };
  }
  if (want.maxExpirationLedger !== undefined && expiration > want.maxExpirationLedger) {
    return {
      ok: false,
      reason: `authorization expiration ledger ${expiration} is beyond the allowed ${want.maxExpirationLedger}`,
    };
  }
  const signature = readSingleSignature(creds.signature());
  if (!signature) {
    return { ok: false, reason: "authorization entry is not signed with one Ed25519 key" };
  }
  const signerKey = StrKey.decodeEd25519PublicKey(want.signer);
  if (!signature.publicKey.equals(signerKey)) {
    return { ok: false, reason: "authorization is signed by a different key than the payer's" };
  }
  const digest = authorizationPreimageHash(want.networkPassphrase, creds.nonce(), expiration, root);
  if (!Keypair.fromPublicKey(want.signer).verify(digest, signature.signature)) {
    return {
      ok: false,
      reason: "authorization signature does not verify (wrong network, tampered or forged)",
    };
  }
  return { ok: true, nonce: creds.nonce().toString(), expirationLedger: expiration };
}

/** Reads `vec[map{public_key: bytes, signature: bytes}]`, the account signature shape. */
function readSingleSignature(value: xdr.ScVal): { publicKey: Buffer; signature: Buffer } | null {
  if (value.switch() !== xdr.ScValType.scvVec()) return null;
  const items = value.vec() ?? [];
  if (items.length !== 1) return null;
  const first = items[0];
  if (!first || first.switch() !== xdr.ScValType.scvMap()) return null;
  let publicKey: Buffer | null = null;
  let signature: Buffer | null = null;
  for (const e of first.map() ?? []) {
    if (e.key().switch() !== xdr.ScValType.scvSymbol() || e.val().switch() !== xdr.ScValType.scvBytes()) {
      return null;
    }
    const name = e.key().sym().toString();
    if (name === "public_key") publicKey = e.val().bytes();
    else if (name === "signature") signature = e.val().bytes();
    else return null;
  }
  if (!publicKey || !signature || publicKey.length !== 32 || signature.length !== 64) return null;
  return { publicKey, signature };
}
