import { Keypair, StrKey } from "@stellar/stellar-sdk";

/**
 * stoka's wallet-signed requests (docs/wire-protocol.md, Wallet-signed routes): sign the raw UTF-8
 * bytes of the challenge `message` with Ed25519, lowercase hex, and send
 * `Authorization: Stellar <G>:<challenge_id>:<hex>`.
 */
export interface StellarAuthorization {
  publicKey: string;
  challengeId: string;
  signatureHex: string;
}

export function signChallengeMessage(keypair: Keypair, message: string): string {
  return keypair.sign(Buffer.from(message, "utf8")).toString("hex");
}

export function formatStellarAuthorization(auth: StellarAuthorization): string {
  return `Stellar ${auth.publicKey}:${auth.challengeId}:${auth.signatureHex}`;
}

/** Returns null for anything that is not exactly the documented shape. */
export function parseStellarAuthorization(header: string | undefined): StellarAuthorization | null {
  if (!header) return null;
  const m = /^Stellar ([A-Z2-7]{56}):([^:\s]+):([0-9a-fA-F]{128})$/.exec(header.trim());
  if (!m) return null;
  const [, publicKey, challengeId, signatureHex] = m as unknown as [string, string, string, string];
  if (!StrKey.isValidEd25519PublicKey(publicKey)) return null;
  return { publicKey, challengeId, signatureHex: signatureHex.toLowerCase() };
}

export function verifyChallengeSignature(publicKey: string, message: string, signatureHex: string): boolean {
  try {
    return Keypair.fromPublicKey(publicKey).verify(
      Buffer.from(message, "utf8"),
      Buffer.from(signatureHex, "hex"),
    );
  } catch {
    return false;
  }
}
