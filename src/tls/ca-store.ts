import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { createCertificateAuthority, hasNameConstraints, loadCertificateAuthority } from "./certificates.js";
import type { CertificateAuthority } from "./certificates.js";

/**
 * The proxy's own CA for TLS interception of paid hosts (docs/operations.md, The interception CA): loaded from configured
 * files (e.g. a Kubernetes secret), or generated on first start into the data directory with
 * the private key readable by its owner only (0600).
 */
export interface CaFiles {
  certFile?: string;
  keyFile?: string;
  /** A CA generated here is name-constrained to these hosts (tls.ca_name_constraints). */
  nameConstraints?: readonly string[];
}

export interface LoadedCa {
  ca: CertificateAuthority;
  /** Absolute, so what is printed can be pasted from any folder. */
  certPath: string;
  created: boolean;
  /** The CA carries X.509 name constraints. */
  constrained: boolean;
}

/** The CA the configuration asks for; `constrain` (ca --name-constraints) adds the constraints. */
export function caFilesOf(config: ProxyConfig, constrain = false): CaFiles {
  return {
    ...(config.tls.caCertFile ? { certFile: config.tls.caCertFile } : {}),
    ...(config.tls.caKeyFile ? { keyFile: config.tls.caKeyFile } : {}),
    ...(constrain || config.tls.caNameConstraints
      ? { nameConstraints: config.paidHosts.map((h) => h.host) }
      : {}),
  };
}

/** Said when constraints were asked for but the CA in place has none (it is never replaced). */
export function unconstrainedCaWarning(certPath: string): string {
  return (
    `the CA at ${certPath} has no name constraints (it was made before they were asked for); ` +
    "to get a constrained one, move it and its key away and run `stoka-proxy ca --name-constraints`, then have apps trust the new certificate"
  );
}

export function caPaths(dataDir: string): { cert: string; key: string } {
  return { cert: join(dataDir, "ca", "stoka-proxy-ca.pem"), key: join(dataDir, "ca", "stoka-proxy-ca.key") };
}

export async function loadOrCreateCa(dataDir: string, files: CaFiles): Promise<LoadedCa> {
  if (files.certFile || files.keyFile) {
    if (!files.certFile || !files.keyFile) {
      throw new StokaProxyError(
        "config_invalid",
        "tls.ca_cert_file and tls.ca_key_file go together",
        "set both, or neither to generate a CA",
      );
    }
    try {
      const ca = await loadCertificateAuthority(
        readFileSync(files.certFile, "utf8"),
        readFileSync(files.keyFile, "utf8"),
      );
      return {
        ca,
        certPath: resolve(files.certFile),
        created: false,
        constrained: hasNameConstraints(ca.cert),
      };
    } catch (e) {
      throw new StokaProxyError(
        "config_invalid",
        `cannot load the CA from ${files.certFile}: ${(e as Error).message}`,
        "give a PEM certificate and its PKCS#8 EC P-256 key",
      );
    }
  }
  const paths = caPaths(dataDir);
  if (existsSync(paths.cert) && existsSync(paths.key)) {
    const ca = await loadCertificateAuthority(
      readFileSync(paths.cert, "utf8"),
      readFileSync(paths.key, "utf8"),
    );
    return { ca, certPath: resolve(paths.cert), created: false, constrained: hasNameConstraints(ca.cert) };
  }
  mkdirSync(join(dataDir, "ca"), { recursive: true, mode: 0o700 });
  const ca = await createCertificateAuthority("stoka-proxy interception CA", 3650, files.nameConstraints);
  writeFileSync(paths.key, ca.keyPem, { mode: 0o600 });
  writeFileSync(paths.cert, ca.certPem, { mode: 0o644 });
  return {
    ca,
    certPath: resolve(paths.cert),
    created: true,
    constrained: files.nameConstraints !== undefined,
  };
}

/** What `stoka-proxy ca` prints: the certificate and how to trust it in common clients. */
export function trustInstructions(certPath: string, certPem: string): string {
  return `${certPem}
The certificate above is stoka-proxy's interception CA (file: ${certPath}).
Apps that reach paid hosts over HTTPS through the proxy must trust it:

  curl              curl --cacert ${certPath} -x http://127.0.0.1:8402 https://test.api.stoka.space/...
  Python requests   export REQUESTS_CA_BUNDLE=${certPath}     (replaces the default bundle: concatenate it with yours if needed)
  Node (undici)     NODE_EXTRA_CA_CERTS=${certPath} node app.js, or new ProxyAgent({ uri, requestTls: { ca } })
  Go                export SSL_CERT_FILE=${certPath}          (or append it to the system bundle)
  Java              keytool -importcert -alias stoka-proxy -file ${certPath} -cacerts -storepass changeit -noprompt
  system (Debian)   cp ${certPath} /usr/local/share/ca-certificates/stoka-proxy.crt && update-ca-certificates

Only paid hosts are intercepted; every other HTTPS host is tunnelled untouched.
`;
}
