import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createSecureContext, createServer } from "node:tls";
import type { AddressInfo } from "node:net";
import type { Server } from "node:tls";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueLeafCertificate, loadCertificateAuthority } from "../../src/tls/certificates.js";
import type { CertificateAuthority, PemPair } from "../../src/tls/certificates.js";

/**
 * `stoka-proxy ca --name-constraints`: a CA that real TLS clients (Node's OpenSSL, curl) accept
 * for the paid hosts only. A leaf it signs for any other name, or for an IP, is refused, so a
 * stolen CA key cannot impersonate the rest of the web to the machines that trust it.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);
const cli = [
  "--import",
  pathToFileURL(join(ROOT, "node_modules/tsx/dist/loader.mjs")).href,
  join(ROOT, "src/cli/main.ts"),
];
const PAID = "test.api.stoka.space";

async function makeCa(dir: string, constrained: boolean): Promise<CertificateAuthority> {
  mkdirSync(dir, { recursive: true });
  const config = join(dir, "config.yaml");
  writeFileSync(config, `paid_hosts: [{ host: ${PAID} }, { host: "other.stoka.internal:8443" }]\n`);
  const { stdout } = await run(
    process.execPath,
    [...cli, "ca", "--pem", "--config", config, ...(constrained ? ["--name-constraints"] : [])],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? "", STOKA_PROXY_DATA_DIR: join(dir, "data") } },
  );
  const key = readFileSync(join(dir, "data", "ca", "stoka-proxy-ca.key"), "utf8");
  return loadCertificateAuthority(stdout, key);
}

/** One TLS server whose certificate follows the SNI name asked for. */
async function serve(leaves: Map<string, PemPair>): Promise<{ server: Server; port: number }> {
  const server = createServer(
    {
      SNICallback: (name, cb) => {
        const leaf = leaves.get(name);
        if (!leaf) return cb(new Error(`no leaf for ${name}`));
        cb(null, createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }));
      },
    },
    (socket) => socket.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** Node's TLS client: resolves "ok" when the chain verifies, else the OpenSSL error code. */
function handshake(port: number, servername: string, ca: string, chainOnly = false): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({
      host: "127.0.0.1",
      port,
      servername,
      ca,
      timeout: 10_000,
      // Only the chain (and so the constraints) decides: the name check is switched off.
      ...(chainOnly ? { checkServerIdentity: () => undefined } : {}),
    });
    socket.once("secureConnect", () => {
      socket.destroy();
      resolve("ok");
    });
    socket.once("error", (e: NodeJS.ErrnoException) => resolve(`refused: ${e.code ?? ""} ${e.message}`));
    socket.once("timeout", () => {
      socket.destroy();
      resolve("timeout");
    });
  });
}

describe("ca --name-constraints", () => {
  const dir = mkdtempSync(join(tmpdir(), "stoka-ca-nc-"));
  let constrained: CertificateAuthority;
  let open: CertificateAuthority;
  const servers: Server[] = [];

  beforeAll(async () => {
    [constrained, open] = await Promise.all([
      makeCa(join(dir, "constrained"), true),
      makeCa(join(dir, "open"), false),
    ]);
  }, 60_000);

  afterAll(() => {
    for (const s of servers) s.close();
  });

  it("Node's TLS client accepts a paid host's leaf and refuses any other name under the constrained CA", async () => {
    const leaves = new Map<string, PemPair>([
      [PAID, await issueLeafCertificate(constrained, [PAID])],
      ["other.stoka.internal", await issueLeafCertificate(constrained, ["other.stoka.internal"])],
      ["evil.example", await issueLeafCertificate(constrained, ["evil.example"])],
      ["ip.example", await issueLeafCertificate(constrained, ["127.0.0.1"])],
    ]);
    const { server, port } = await serve(leaves);
    servers.push(server);
    expect(await handshake(port, PAID, constrained.certPem)).toBe("ok");
    expect(await handshake(port, "other.stoka.internal", constrained.certPem)).toBe("ok");
    // OpenSSL's X509_V_ERR_PERMITTED_VIOLATION (Node has no code name for it).
    expect(await handshake(port, "evil.example", constrained.certPem)).toMatch(
      /^refused: .*permitted subtree violation/i,
    );
    // An IP SAN: every IP is excluded when no paid host is an IP (the chain itself fails).
    expect(await handshake(port, "ip.example", constrained.certPem, true)).toMatch(
      /^refused: .*excluded subtree violation/i,
    );
  }, 30_000);

  it("curl agrees; and without the option the CA vouches for anything (the control)", async () => {
    const leaves = new Map<string, PemPair>([
      [PAID, await issueLeafCertificate(constrained, [PAID])],
      ["evil.example", await issueLeafCertificate(constrained, ["evil.example"])],
      ["open.example", await issueLeafCertificate(open, ["open.example"])],
    ]);
    const { server, port } = await serve(leaves);
    servers.push(server);
    const caFile = join(dir, "constrained.pem");
    writeFileSync(caFile, constrained.certPem);
    const curl = (host: string, ca: string) =>
      run("curl", [
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        ca,
        "--resolve",
        `${host}:${port}:127.0.0.1`,
        `https://${host}:${port}/`,
      ]).then(
        (r) => r.stdout,
        (e: { stderr: string }) => `refused: ${e.stderr}`,
      );
    expect(await curl(PAID, caFile)).toBe("ok");
    expect(await curl("evil.example", caFile)).toMatch(/^refused: .*(permitted subtree|certificate)/i);
    const openFile = join(dir, "open.pem");
    writeFileSync(openFile, open.certPem);
    expect(await handshake(port, "open.example", open.certPem)).toBe("ok");
    expect(await curl("open.example", openFile)).toBe("ok");
  }, 30_000);
});
