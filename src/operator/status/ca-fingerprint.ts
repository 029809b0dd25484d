import { createHash } from "node:crypto";

/**
 * The CA's fingerprint as browsers and `openssl x509 -fingerprint -sha256` show it: SHA-256 of
 * the certificate's DER encoding, upper-case hex pairs joined by colons. Pure.
 */
export function sha256Fingerprint(der: Uint8Array): string {
  const hex = createHash("sha256").update(der).digest("hex").toUpperCase();
  return (hex.match(/../g) ?? []).join(":");
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/;

/** The DER bytes of the first certificate in a PEM text (RFC 7468), or null when none. */
export function derFromPem(pem: string): Uint8Array | null {
  const m = PEM_CERT.exec(pem);
  if (!m) return null;
  const der = Buffer.from((m[1] as string).replace(/\s+/g, ""), "base64");
  return der.length > 0 ? new Uint8Array(der) : null;
}
