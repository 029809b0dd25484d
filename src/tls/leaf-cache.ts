import tls from "node:tls";
import { LRUCache } from "lru-cache";
import { generateKeyPair, issueLeafCertificate } from "./certificates.js";
import type { CertificateAuthority } from "./certificates.js";

/**
 * Leaf certificates for intercepted hosts: one key pair generated once and reused, a signed
 * certificate per host cached (lru-cache), and concurrent first requests for the same host
 * sharing one signing. Signing is a short async WebCrypto call; no key generation per host.
 */
export class LeafCertificates {
  private readonly keys: Promise<CryptoKeyPair>;
  private readonly cache = new LRUCache<string, Promise<tls.SecureContext>>({ max: 500 });

  constructor(private readonly ca: CertificateAuthority) {
    this.keys = generateKeyPair();
  }

  contextFor(host: string): Promise<tls.SecureContext> {
    let ctx = this.cache.get(host);
    if (!ctx) {
      ctx = this.keys.then(async (keys) => {
        const leaf = await issueLeafCertificate(this.ca, [host], keys, 397);
        return tls.createSecureContext({
          cert: `${leaf.certPem.trim()}\n${this.ca.certPem.trim()}\n`,
          key: leaf.keyPem,
        });
      });
      ctx.catch(() => this.cache.delete(host));
      this.cache.set(host, ctx);
    }
    return ctx;
  }
}

type CryptoKeyPair = Awaited<ReturnType<typeof generateKeyPair>>;
