import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The newcomer's path: `stoka-proxy sandbox` prints curl commands; pasting them stores and
 * retrieves a blob, paid. Runs the real CLI as a child process.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);
const cli = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];

let child: ChildProcess;
let banner = "";
let stderr = "";

beforeAll(async () => {
  child = spawn(
    process.execPath,
    [...cli, "sandbox", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, STOKA_PROXY_LOG_LEVEL: "warn" },
    },
  );
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sandbox did not start: ${stderr}`)), 25_000);
    child.stdout?.on("data", (c: Buffer) => {
      banner += c.toString();
      if (banner.includes("Stop with Ctrl-C")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}, 30_000);

afterAll(async () => {
  child.kill("SIGTERM");
  await new Promise((resolve) => child.once("exit", resolve));
});

describe("stoka-proxy sandbox", () => {
  it("prints copy-paste curl commands that store and retrieve a blob, paid", async () => {
    const commands = banner.split("\n").filter((l) => l.trim().startsWith("curl -i"));
    expect(commands.length).toBeGreaterThanOrEqual(4);
    const [storeCmd, retrieveCmd, httpsCmd, gatewayCmd] = commands.map(
      (c) => c.trim().split("   (")[0] ?? "",
    );
    const stored = (await run("sh", ["-c", storeCmd ?? ""])).stdout;
    expect(stored).toMatch(/^HTTP\/1\.1 201/);
    expect(stored).toMatch(/x-stoka-proxy-paid: 1400/i);
    expect(stored).toMatch(/x-stoka-proxy-tx: [0-9a-f]{64}/i);
    const retrieved = (await run("sh", ["-c", retrieveCmd ?? ""])).stdout;
    expect(retrieved).toMatch(/^HTTP\/1\.1 200/);
    expect(retrieved).toMatch(/x-stoka-proxy-paid: 1100/i);
    expect(retrieved.trimEnd().endsWith("hello, stoka")).toBe(true);
    const overTls = (await run("sh", ["-c", httpsCmd ?? ""])).stdout;
    expect(overTls).toMatch(/HTTP\/1\.1 200/);
    expect(overTls.trimEnd().endsWith("hello, stoka")).toBe(true);
    expect((await run("sh", ["-c", gatewayCmd ?? ""])).stdout).toMatch(/^HTTP\/1\.1 201/);
  });

  it("prints the wallet's public key and never its seed", () => {
    expect(banner).toMatch(/wallet\s+G[A-Z2-7]{55}/);
    expect(banner + stderr).not.toMatch(/(^|[^A-Z2-7])S[A-Z2-7]{55}([^A-Z2-7]|$)/);
  });

  it("serves /healthz and /readyz on the admin listener", async () => {
    const admin = /admin\s+(http:\/\/[^/\s]+)/.exec(banner)?.[1];
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
  });
});

describe("stoka-proxy ca", () => {
  it("generates the CA on first use (key 0600), prints it and how to trust it", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "stoka-ca-"));
    const { stdout } = await run(process.execPath, [...cli, "ca"], {
      cwd: ROOT,
      env: { ...process.env, STOKA_PROXY_DATA_DIR: dataDir },
    });
    expect(stdout).toMatch(/-----BEGIN CERTIFICATE-----/);
    for (const client of [
      "curl",
      "REQUESTS_CA_BUNDLE",
      "NODE_EXTRA_CA_CERTS",
      "SSL_CERT_FILE",
      "keytool",
      "update-ca-certificates",
    ]) {
      expect(stdout).toContain(client);
    }
    expect(statSync(join(dataDir, "ca", "stoka-proxy-ca.key")).mode & 0o777).toBe(0o600);
    // The second run loads the same CA.
    const again = await run(process.execPath, [...cli, "ca"], {
      cwd: ROOT,
      env: { ...process.env, STOKA_PROXY_DATA_DIR: dataDir },
    });
    expect(again.stdout.split("-----END CERTIFICATE-----")[0]).toBe(
      stdout.split("-----END CERTIFICATE-----")[0],
    );
  });
});

describe("stoka-proxy check-config", () => {
  it("accepts a valid file and names the field of an invalid one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stoka-cli-"));
    const good = join(dir, "good.yaml");
    writeFileSync(good, "budgets: [{ name: b, limits: { day: '1 USDC' } }]\n");
    const ok = await run(process.execPath, [...cli, "check-config", "--config", good], { cwd: ROOT });
    expect(ok.stdout).toMatch(/configuration is valid: stellar:testnet, 1 paid host\(s\), 1 budget\(s\)/);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "budgets: [{ name: b, limits: { day: 'lots' } }]\n");
    const err = await run(process.execPath, [...cli, "check-config", "--config", bad], { cwd: ROOT }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((err as { code: number }).code).toBe(78);
    expect((err as { stderr: string }).stderr).toMatch(/bad\.yaml: budgets\.0\.limits\.day/);
  });

  it("names every paid_hosts entry that could never match, and accepts authorities", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stoka-cli-"));
    const bad = join(dir, "paid-hosts.yaml");
    writeFileSync(
      bad,
      `paid_hosts:
  - host: ""
  - host: https://stoka.internal
  - host: stoka.internal/v1
  - host: stoka.internal:99999
  - host: stoka.internal:8443
  - host: STOKA.internal.:8443
  - host: ok.example
    upstream: https://ok.example/some/path
`,
    );
    const err = await run(process.execPath, [...cli, "check-config", "--config", bad], { cwd: ROOT }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((err as { code: number }).code).toBe(78);
    const stderr = (err as { stderr: string }).stderr;
    expect(stderr).toMatch(/paid_hosts\.0\.host: .*empty/);
    expect(stderr).toMatch(/paid_hosts\.1\.host: .*is a URL, not a host/);
    expect(stderr).toMatch(/paid_hosts\.2\.host: .*path/);
    expect(stderr).toMatch(/paid_hosts\.3\.host: .*port/);
    expect(stderr).not.toMatch(/paid_hosts\.4\.host: /);
    expect(stderr).toMatch(/paid_hosts\.5\.host: .*duplicate of paid_hosts\.4/);
    expect(stderr).toMatch(/paid_hosts\.6\.upstream: .*path/);

    const good = join(dir, "good-hosts.yaml");
    writeFileSync(
      good,
      `paid_hosts:
  - host: stoka.internal:8443
  - host: stoka.internal
    upstream: https://stoka.internal:9443
  - host: "[::1]:8443"
budgets: [{ name: b, limits: { day: '1 USDC' } }]
`,
    );
    const ok = await run(process.execPath, [...cli, "check-config", "--config", good], { cwd: ROOT });
    expect(ok.stdout).toMatch(/configuration is valid: stellar:testnet, 3 paid host\(s\)/);
  });
});
