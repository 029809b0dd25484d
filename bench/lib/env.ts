import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";

/**
 * The files one bench run shares: a temp folder, the test CA the MITM contenders sign leaves
 * with (stoka-proxy and the bare TLS forwarder; mitmproxy makes its own in its confdir), and
 * the upstream's own CA and certificate. Everything is generated at run time and removed after.
 */
export interface BenchEnv {
  root: string;
  caCertFile: string;
  caKeyFile: string;
  upstreamCaFile: string;
  upstreamCertFile: string;
  upstreamKeyFile: string;
  mitmConfDir: string;
  mitmCaFile: string;
  ports: { plain: number; paid_http: number; paid_https: number };
  freshDir(tag: string): string;
  /** The CAs a client of any contender must trust (mitmproxy's once it exists). */
  clientCaFiles(): string[];
  /** The same, concatenated in one file (for curl). */
  caBundle(): string;
  remove(): void;
}

export async function makeBenchEnv(keep: boolean): Promise<BenchEnv> {
  const root = mkdtempSync(join(tmpdir(), "stoka-bench-"));
  const ca = await createCertificateAuthority("stoka-proxy bench CA");
  const upstreamCa = await createCertificateAuthority("stoka-proxy bench upstream CA");
  const leaf = await issueLeafCertificate(upstreamCa, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost"]);
  const file = (name: string, text: string, mode = 0o644) => {
    const p = join(root, name);
    writeFileSync(p, text, { mode });
    return p;
  };
  const mitmConfDir = join(root, "mitmproxy");
  mkdirSync(mitmConfDir);
  const env: BenchEnv = {
    root,
    caCertFile: file("bench-ca.pem", ca.certPem),
    caKeyFile: file("bench-ca.key", ca.keyPem, 0o600),
    upstreamCaFile: file("upstream-ca.pem", upstreamCa.certPem),
    upstreamCertFile: file("upstream.pem", leaf.certPem),
    upstreamKeyFile: file("upstream.key", leaf.keyPem, 0o600),
    mitmConfDir,
    mitmCaFile: join(mitmConfDir, "mitmproxy-ca-cert.pem"),
    ports: { plain: 0, paid_http: 0, paid_https: 0 },
    freshDir: (tag) => mkdtempSync(join(root, `${tag}-`)),
    clientCaFiles: () => [env.caCertFile, env.upstreamCaFile, env.mitmCaFile].filter((f) => existsSync(f)),
    caBundle: () =>
      file(
        "ca-bundle.pem",
        env
          .clientCaFiles()
          .map((f) => readFileSync(f, "utf8"))
          .join("\n"),
      ),
    remove: () => {
      if (!keep) rmSync(root, { recursive: true, force: true });
    },
  };
  return env;
}
