import https from "node:https";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Keypair } from "@stellar/stellar-sdk";
import { Ledger } from "../../src/ledger/ledger.js";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import { NETWORKS } from "../../src/stellar/networks.js";
import { warmUpPaymentCode } from "../../src/wallet/warm-up.js";
import { curl } from "../support/clients.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { until } from "../support/sockets.js";
import { parse, stringify } from "yaml";

/**
 * Attack review of 48d9dac, areas 5 (src/wallet/warm-up.ts, run by `start` before listen) and
 * 1 end to end (the SDK trust store in the proxy process):
 *  - warm-up makes no network call (the RPC sits behind a connection-counting relay), writes
 *    no ledger row, charges nothing, logs nothing secret-shaped, and never signs with the wallet;
 *  - if it throws (Keypair.random patched to throw, by a --require preload) the proxy still
 *    starts and pays;
 *  - NODE_EXTRA_CA_CERTS alone (no wallet.rpc_ca_files) still lets the SDK reach an RPC whose
 *    CA only it names (documented: Node's default store honours it);
 *  - a CA given only to the SDK (wallet.rpc_ca_files) is not trusted for a paid host's upstream.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
// The sources under tsx, as the other process tests run them (a fresh clone has no dist/).
const CLI = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
const BASE = "http://test.api.stoka.space";
const PRICE = 1400n;
const SECRET_SHAPED = /\bS[A-Z2-7]{55}\b/;

let sb: Sandbox;
let dir: string;
beforeAll(async () => {
  sb = await startSandbox();
  dir = mkdtempSync(join(tmpdir(), "attack-3b9-warm-"));
}, 60_000);
afterAll(async () => {
  await sb?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A TCP relay to the fake RPC that counts the connections made through it. */
async function countingRelay(target: URL): Promise<{ url: string; count: () => number; close: () => void }> {
  let count = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((c) => {
    count += 1;
    const u = net.connect(Number(target.port), target.hostname);
    for (const s of [c, u]) {
      socks.add(s);
      s.on("error", () => undefined);
      s.on("close", () => socks.delete(s));
    }
    c.pipe(u).pipe(c);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    count: () => count,
    close: () => {
      for (const s of socks) s.destroy();
      server.close();
    },
  };
}

function ledgerRows(dataDir: string) {
  const file = join(dataDir, "stoka-proxy.db");
  if (!existsSync(file)) return [];
  const db = openDatabase(file);
  try {
    return new Ledger(db).latest();
  } finally {
    db.close();
  }
}

const lines = (p: ProxyProcess) =>
  p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const budgets = [{ name: "day", limits: { day: "1 USDC" } }];

describe("attack: the payment code's warm-up before listen (built proxy)", () => {
  it("opens no connection, writes no ledger row, charges nothing, logs nothing secret; then pays normally", async () => {
    const relay = await countingRelay(new URL(sb.rpc.url));
    const caFile = join(dir, "sandbox-ca.pem");
    writeFileSync(caFile, sb.ca.certPem);
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budgets,
      log_level: "debug",
      wallet: { rpc_url: relay.url, rpc_ca_files: [caFile], ledger_close_seconds: 5 },
    });
    const charged = sb.emulator.chargedTotal(sb.wallet.publicKey());
    const p = await startProxyProcess(sb, configPath, dataDir, { cli: CLI });
    try {
      const all = lines(p);
      const warmed = all.findIndex((l) => l.msg === "payment code warmed up");
      const listening = all.findIndex((l) => l.msg === "stoka-proxy listening");
      expect(warmed, p.output()).toBeGreaterThanOrEqual(0);
      expect(warmed).toBeLessThan(listening);
      // The line says how long, and nothing else.
      const allowed = ["duration_ms", "hostname", "level", "msg", "pid", "time", "service"];
      expect(Object.keys(all[warmed] ?? {}).filter((k) => !allowed.includes(k))).toEqual([]);
      // Nothing reached the RPC by the time it listens; no row, no charge.
      await new Promise((r) => setTimeout(r, 300));
      expect(relay.count()).toBe(0);
      expect(ledgerRows(dataDir)).toEqual([]);
      expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(charged);
      expect(p.output()).not.toContain(sb.wallet.secret());
      expect(p.output()).not.toMatch(SECRET_SHAPED);

      // The relay does count: a paid request goes through it, and is paid once.
      const r = await curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "warm-1" },
        body: Buffer.from("w".repeat(42)),
      });
      expect(r.status).toBe(201);
      expect(relay.count()).toBeGreaterThan(0);
      expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(charged + PRICE);
      expect(ledgerRows(dataDir).map((x) => x.state)).toEqual(["settled"]);
      expect(p.output()).not.toMatch(SECRET_SHAPED);
    } finally {
      await p.stop("SIGKILL");
      relay.close();
    }
  }, 90_000);

  it("a warm-up that throws: the proxy still starts, logs no secret, and pays", async () => {
    const preload = join(dir, "break-warm-up.cjs");
    writeFileSync(
      preload,
      `const { createRequire } = require("node:module");
       const sdk = createRequire(${JSON.stringify(join(ROOT, "package.json"))})("@stellar/stellar-sdk");
       sdk.Keypair.random = () => { throw new Error("warm-up broken on purpose"); };`,
    );
    const { configPath, dataDir } = writeProxyConfig(sb, { budgets, log_level: "debug" });
    const charged = sb.emulator.chargedTotal(sb.wallet.publicKey());
    const p = await startProxyProcess(sb, configPath, dataDir, {
      cli: CLI,
      nodeArgs: ["--require", preload],
    });
    try {
      const failed = lines(p).find((l) => l.msg === "payment code warm-up failed");
      expect(failed, p.output()).toBeDefined();
      expect(String(failed?.err)).toMatch(/broken on purpose/);
      expect(p.output()).not.toContain(sb.wallet.secret());
      const r = await curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "warm-2" },
        body: Buffer.from("x".repeat(42)),
      });
      expect(r.status).toBe(201);
      expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(charged + PRICE);
      expect(ledgerRows(dataDir)).toHaveLength(1);
    } finally {
      await p.stop("SIGKILL");
    }
  }, 90_000);

  it("never signs with the wallet's key (only throwaway keys sign)", async () => {
    const wallet = sb.wallet.publicKey();
    const signers: string[] = [];
    const original = Keypair.prototype.sign;
    Keypair.prototype.sign = function (this: Keypair, data: Buffer) {
      signers.push(this.publicKey());
      return original.call(this, data);
    };
    try {
      for (const n of Object.values(NETWORKS)) await warmUpPaymentCode(n.passphrase);
    } finally {
      Keypair.prototype.sign = original;
    }
    expect(signers.length).toBeGreaterThan(0);
    expect(signers).not.toContain(wallet);
    expect(new Set(signers).size).toBe(Object.values(NETWORKS).length); // a fresh key each time
  });
});

describe("attack: the SDK trust store end to end (built proxy)", () => {
  it("NODE_EXTRA_CA_CERTS alone lets the SDK reach the RPC (no wallet.rpc_ca_files)", async () => {
    const caFile = join(dir, "sandbox-ca-env.pem");
    writeFileSync(caFile, sb.ca.certPem);
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budgets,
      wallet: { rpc_url: sb.rpc.url, ledger_close_seconds: 5 },
    });
    const charged = sb.emulator.chargedTotal(sb.wallet.publicKey());
    const p = await startProxyProcess(sb, configPath, dataDir, {
      cli: CLI,
      env: { NODE_EXTRA_CA_CERTS: caFile },
    });
    try {
      const r = await curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "env-ca" },
        body: Buffer.from("e".repeat(42)),
      });
      expect(r.status, r.body.toString()).toBe(201);
      expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(charged + PRICE);
    } finally {
      await p.stop("SIGKILL");
    }
    // And without it, the RPC is a stranger: nothing is paid.
    const q = await startProxyProcess(sb, configPath, dataDir, { cli: CLI });
    try {
      const before = sb.emulator.chargedTotal(sb.wallet.publicKey());
      const r = await curl({
        proxy: q.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "env-ca-2" },
        body: Buffer.from("e".repeat(42)),
      });
      expect(r.status).not.toBe(201);
      expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(before);
    } finally {
      await q.stop("SIGKILL");
    }
  }, 120_000);

  it("a CA in wallet.rpc_ca_files only is not trusted for a paid host's HTTPS upstream", async () => {
    const caB = await createCertificateAuthority("rpc-only CA", 1);
    const leaf = await issueLeafCertificate(caB, ["127.0.0.1"]);
    let hits = 0;
    const upstream = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_q, s) => {
      hits += 1;
      s.end("reached");
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = (upstream.address() as AddressInfo).port;
    const sandboxCa = join(dir, "sandbox-ca-2.pem");
    const rpcOnly = join(dir, "rpc-only.pem");
    writeFileSync(sandboxCa, sb.ca.certPem);
    writeFileSync(rpcOnly, caB.certPem);
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budgets,
      paid_hosts: [
        { host: "test.api.stoka.space", upstream: sb.emulator.httpUrl },
        { host: "b.api.example", upstream: `https://127.0.0.1:${port}` },
      ],
      wallet: { rpc_url: sb.rpc.url, rpc_ca_files: [sandboxCa, rpcOnly], ledger_close_seconds: 5 },
      upstream: { ca_files: [sandboxCa] },
    });
    const p = await startProxyProcess(sb, configPath, dataDir, { cli: CLI });
    try {
      // The SDK's store does trust caB and is in use (a payment works) ...
      const ok = await curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "rpc-only" },
        body: Buffer.from("r".repeat(42)),
      });
      expect(ok.status).toBe(201);
      // ... but the paid host's upstream, trusted by upstream.ca_files only, is refused.
      const r = await curl({ proxy: p.url, method: "GET", url: "http://b.api.example/v1/retrieve/x" });
      expect(r.status).toBe(502);
      expect(await until(() => hits > 0, 500)).toBe(false);
      expect(hits).toBe(0);
    } finally {
      await p.stop("SIGKILL");
      upstream.close();
    }
  }, 90_000);
  it("a reload that drops the RPC CA: reported as needing a restart, the store in use stays until then", async () => {
    const caFile = join(dir, "sandbox-ca-reload.pem");
    writeFileSync(caFile, sb.ca.certPem);
    const { configPath, dataDir } = writeProxyConfig(sb, {
      budgets,
      wallet: { rpc_url: sb.rpc.url, rpc_ca_files: [caFile], ledger_close_seconds: 5 },
    });
    const p = await startProxyProcess(sb, configPath, dataDir, { cli: CLI });
    try {
      const file = parse(readFileSync(configPath, "utf8")) as { wallet: Record<string, unknown> };
      file.wallet.rpc_ca_files = [];
      writeFileSync(configPath, stringify(file));
      const reloads = () => lines(p).filter((l) => /^configuration reload/.test(String(l.msg)));
      p.child.kill("SIGHUP");
      expect(await until(() => reloads().length > 0, 10_000)).toBe(true);
      expect(reloads()[0]?.needs_restart).toContain("wallet");
      const before = sb.emulator.chargedTotal(sb.wallet.publicKey());
      const r = await curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "after-reload" },
        body: Buffer.from("a".repeat(42)),
      });
      expect(r.status).toBe(201);
      expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(before + PRICE);
    } finally {
      await p.stop("SIGKILL");
    }
  }, 90_000);
});
