// @peculiar/x509 2.x needs the Reflect metadata polyfill loaded before it.
import "reflect-metadata";
import { webcrypto } from "node:crypto";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import { isIP } from "node:net";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  NameConstraints,
  id_ce_nameConstraints,
} from "@peculiar/asn1-x509";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface CertificateAuthority extends PemPair {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

function serial(): string {
  // Positive 16-byte serial (RFC 5280 §4.1.2.2).
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString("hex");
}

async function keyToPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

/**
 * RFC 5280 §4.2.1.10 name constraints: the CA may only vouch for `hosts` (a DNS name permits
 * itself and its subdomains; an IP itself). With no IP among them every IP is excluded, since
 * permitted DNS subtrees alone leave IP names unconstrained. Marked critical, as the RFC asks.
 */
export function nameConstraintsExtension(hosts: readonly string[]): x509.Extension {
  const subtree = (name: GeneralName) => new GeneralSubtree({ base: name });
  const dns = [...new Set(hosts.filter((h) => isIP(h) === 0))];
  const ips = [...new Set(hosts.filter((h) => isIP(h) !== 0))];
  const permitted = [
    ...dns.map((d) => subtree(new GeneralName({ dNSName: d }))),
    ...ips.map((ip) => subtree(new GeneralName({ iPAddress: `${ip}/${isIP(ip) === 4 ? 32 : 128}` }))),
  ];
  const constraints = new NameConstraints({
    ...(permitted.length > 0 ? { permittedSubtrees: new GeneralSubtrees(permitted) } : {}),
    ...(ips.length === 0
      ? {
          excludedSubtrees: new GeneralSubtrees([
            subtree(new GeneralName({ iPAddress: "0.0.0.0/0" })),
            subtree(new GeneralName({ iPAddress: "::/0" })),
          ]),
        }
      : {}),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(constraints));
}

/** Whether a CA certificate carries name constraints. */
export function hasNameConstraints(cert: x509.X509Certificate): boolean {
  return cert.getExtension(id_ce_nameConstraints) !== null;
}

/**
 * A self-signed CA certificate that can sign leaf certificates; with `permittedHosts`, one
 * that clients accept for those hosts only (nameConstraintsExtension).
 */
export async function createCertificateAuthority(
  commonName: string,
  days = 3650,
  permittedHosts?: readonly string[],
): Promise<CertificateAuthority> {
  const keys = await generateKeyPair();
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + days * 86_400_000),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ...(permittedHosts ? [nameConstraintsExtension(permittedHosts)] : []),
    ],
  });
  return { cert, keys, certPem: cert.toString("pem"), keyPem: await keyToPem(keys.privateKey) };
}

/** Loads a CA from PEM files' contents (e.g. a mounted Kubernetes secret). */
export async function loadCertificateAuthority(
  certPem: string,
  keyPem: string,
): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(certPem);
  const privateKey = await webcrypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(keyPem),
    ALG,
    true,
    ["sign"],
  );
  const publicKey = await cert.publicKey.export(ALG, ["verify"]);
  return { cert, keys: { privateKey, publicKey }, certPem, keyPem };
}

/**
 * A server certificate for `hosts` (DNS names or IP addresses), signed by `ca`. Passing a
 * reused `keys` pair avoids generating a key per host.
 */
export async function issueLeafCertificate(
  ca: CertificateAuthority,
  hosts: string[],
  keys?: CryptoKeyPair,
  days = 365,
): Promise<PemPair> {
  const leafKeys = keys ?? (await generateKeyPair());
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${hosts[0] ?? "localhost"}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + days * 86_400_000),
    signingAlgorithm: ALG,
    publicKey: leafKeys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        hosts.map((h) => (isIP(h) ? { type: "ip" as const, value: h } : { type: "dns" as const, value: h })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyToPem(leafKeys.privateKey) };
}
