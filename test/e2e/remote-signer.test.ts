import { webcrypto } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callSignerApi } from "../support/signer-client.js";
import { resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import type { LedgerRow } from "../../src/ledger/entry.js";
import { createLogger } from "../../src/observability/logger.js";
import { hashToken } from "../../src/proxy/client-identity.js";
import { StokaProxy } from "../../src/proxy/server.js";
import { SignerServer } from "../../src/proxy/signer-server.js";
import * as x509 from "@peculiar/x509";
import {
  createCertificateAuthority,
  generateKeyPair,
  issueLeafCertificate,
} from "../../src/tls/certificates.js";
import type { CertificateAuthority, PemPair } from "../../src/tls/certificates.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * Keyless sidecars (docs/security.md, Keyless sidecars): sidecar proxies with no seed pay the
 * emulator through the gateway's signer role, over HTTPS with their pod tokens. The signer's
 * ledger and the emulator's charges are the truth checked.
 */
const BASE = "http://test.api.stoka.space";
const BODY = Buffer.from("r".repeat(42));
const TOKEN_A = "pod-token-of-team-a-0123456789";
const TOKEN_B = "pod-token-of-team-b-0123456789";
const TOKEN_C = "pod-token-of-team-c-0123456789";
const TOKEN_D = "pod-token-of-team-d-0123456789";

let w: ProxyWorld;
let signer: SignerServer;
let signerCa: CertificateAuthority;
const sidecars: { proxy: StokaProxy; dir: string }[] = [];
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  signerCa = await createCertificateAuthority("remote-signer test CA");
  const leaf = await issueLeafCertificate(signerCa, ["127.0.0.1", "localhost"]);
  w = await startProxyWorld((c, sandbox) => {
    // The emulator by its own address too: a sidecar in gateway mode pays it under that name.
    const emulator = new URL(sandbox.emulator.httpUrl);
    c.paidHosts.push({ host: "127.0.0.1", port: Number(emulator.port), upstream: emulator, payTo: [] });
    c.budgets = [
      // team-a may spend 2000 a day: one store (1400) fits, a second does not.
      {
        name: "team-a-day",
        match: { clients: ["team-a"] },
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 2000n }],
      },
      {
        // Every payment of team-d waits for a person, on the signer.
        name: "team-d-day",
        match: { clients: ["team-d"] },
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 100_000n }],
        approval: { above: 1000n, timeoutMs: 10_000 },
      },
      {
        name: "team-c-day",
        match: { clients: ["team-c"] },
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 3000n }],
      },
      {
        name: "team-b-day",
        match: { clients: ["team-b"] },
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 100_000n }],
      },
    ];
    c.signer = {
      listen: { host: "127.0.0.1", port: 0 },
      certPem: leaf.certPem,
      keyPem: leaf.keyPem,
      tokens: [
        { client: "team-a", tokenSha256: hashToken(TOKEN_A), walletAuthRoutes: ["delete", "usage"] },
        { client: "team-b", tokenSha256: hashToken(TOKEN_B), walletAuthRoutes: [] },
        { client: "team-c", tokenSha256: hashToken(TOKEN_C), walletAuthRoutes: [] },
        { client: "team-d", tokenSha256: hashToken(TOKEN_D), walletAuthRoutes: [] },
      ],
    };
  });
  signer = new SignerServer(
    w.config.signer as NonNullable<typeof w.config.signer>,
    w.proxy.ctx,
    w.proxy.registry,
  );
  await signer.listen();
}, 60_000);

afterAll(async () => {
  for (const s of sidecars) {
    await s.proxy.close();
    rmSync(s.dir, { recursive: true, force: true });
  }
  for (const c of cleanup) await c();
  await signer?.close();
  await w?.close();
});

/** A client certificate (clientAuth) from `ca`, for a signer that asks for mTLS. */
async function clientCertificate(ca: CertificateAuthority, name: string): Promise<PemPair> {
  const keys = await generateKeyPair();
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "01",
    subject: `CN=${name}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + 86_400_000),
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  const key = x509.PemConverter.encode(
    await webcrypto.subtle.exportKey("pkcs8", keys.privateKey),
    "PRIVATE KEY",
  );
  return { certPem: cert.toString("pem"), keyPem: key };
}

/** A sidecar as a Kubernetes pod runs it: a config file's settings, a token file, no seed. */
async function startSidecar(token: string, signerUrl = signer.url, timeoutMs = 5000, client?: PemPair) {
  const dir = mkdtempSync(join(tmpdir(), "stoka-sidecar-"));
  writeFileSync(join(dir, "token"), `${token}\n`, { mode: 0o600 });
  writeFileSync(join(dir, "signer-ca.pem"), signerCa.certPem);
  if (client) {
    writeFileSync(join(dir, "client.pem"), client.certPem);
    writeFileSync(join(dir, "client.key"), client.keyPem, { mode: 0o600 });
  }
  const file = configFileSchema.parse({
    listen: "127.0.0.1:0",
    admin_listen: "127.0.0.1:0",
    stoka_env: "test",
    paid_hosts: [{ host: "test.api.stoka.space", upstream: w.sandbox.emulator.httpUrl }],
    // Origin-form requests (the app's base URL is the sidecar) go to the emulator.
    gateway: { upstream: w.sandbox.emulator.httpUrl },
    wallet: {
      remote_signer: {
        url: signerUrl,
        token_file: join(dir, "token"),
        ca_file: join(dir, "signer-ca.pem"),
        timeout_ms: timeoutMs,
        ...(client
          ? { client_cert_file: join(dir, "client.pem"), client_key_file: join(dir, "client.key") }
          : {}),
      },
    },
    tls: { intercept: false },
    data_dir: join(dir, "data"),
  });
  const config = resolveConfig(file, "(sidecar)", {});
  const sink = new PassThrough();
  let logs = "";
  sink.on("data", (c: Buffer) => (logs += c.toString("utf8")));
  const proxy = new StokaProxy(config, { logger: createLogger("info", sink) });
  await proxy.listen();
  sidecars.push({ proxy, dir });
  return { proxy, url: proxy.url, logs: () => logs, config };
}

const store = (proxy: string, key: string) =>
  curl({ proxy, method: "POST", url: `${BASE}/v1/store`, headers: { "X-Stoka-Key": key }, body: BODY });

async function signerRows(): Promise<LedgerRow[]> {
  const rows: LedgerRow[] = [];
  for await (const r of w.proxy.stores.payments.rows()) rows.push(r);
  return rows;
}

/** Waits (bounded) until the signer's ledger closes a payment: the sidecar reports after answering. */
async function closedRow(paymentId: string): Promise<LedgerRow> {
  for (let i = 0; i < 100; i++) {
    const row = (await signerRows()).find(
      (r) => r.paymentId === paymentId && r.state !== "reserved" && r.state !== "sent",
    );
    if (row) return row;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`payment ${paymentId} was never closed on the signer`);
}

/** A direct call to the signer's API, as a (possibly hostile) pod would make it. */
function callSigner(token: string, path: string, body?: unknown) {
  return callSignerApi(signer.url, signerCa.certPem, token, path, body);
}

const charged = () => w.charged();
let aPaymentId = "";

describe("keyless sidecars", () => {
  it("a sidecar with no seed pays through the signer: charged once, booked under its token's client", async () => {
    const a = await startSidecar(TOKEN_A);
    expect(a.config.wallet.secret).toBeUndefined();
    expect(a.proxy.ctx.signer?.kind).toBe("remote");
    const before = charged();
    const chargesBefore = w.sandbox.emulator.state.charges.length;
    const res = await store(a.url, "a-1");
    expect(res.status).toBe(201);
    expect(res.headers["x-stoka-proxy-paid"]).toBe("1400");
    expect(charged() - before).toBe(1400n);
    expect(w.sandbox.emulator.state.charges.length - chargesBefore).toBe(1);
    expect(w.signCalls()).toBe(1);
    // The signer's ledger: one payment, under team-a, reserved → sent → settled with the tx.
    const sidecarRow = (await a.proxy.stores.payments.latest()).at(-1);
    const rows = (await signerRows()).filter((r) => r.client === "team-a");
    const ids = [...new Set(rows.map((r) => r.paymentId))];
    expect(ids).toHaveLength(1);
    aPaymentId = ids[0] as string;
    const closed = await closedRow(aPaymentId);
    expect(closed.state).toBe("settled");
    expect(closed.tx).toBe(res.headers["x-stoka-proxy-tx"]);
    expect(rows[0]?.amount).toBe(1400n);
    // The two ledgers join on the sidecar's request id.
    expect(rows[0]?.requestId).toBe(sidecarRow?.requestId);
    // Nothing secret in the sidecar's log.
    expect(a.logs()).not.toContain(TOKEN_A);
  });

  it("over its quota: 402 with the signer's reason; nothing signed, nothing charged", async () => {
    const a = await startSidecar(TOKEN_A);
    const before = charged();
    const signs = w.signCalls();
    const res = await store(a.url, "a-2");
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("signer_refused");
    const body = JSON.parse(res.body.toString("utf8")) as {
      proxy: Record<string, unknown>;
      accepts?: unknown;
    };
    expect(body.proxy.code).toBe("signer_refused");
    expect(body.proxy.signer_code).toBe("budget_exceeded");
    expect(String(body.proxy.reason)).toMatch(/team-a-day/);
    // The upstream's own 402 is kept: a stoka client can still read what was asked.
    expect(body.accepts).toBeDefined();
    expect(charged()).toBe(before);
    expect(w.signCalls()).toBe(signs);
  });

  it("a token for team-a cannot spend team-b's budget; team-b's own token can", async () => {
    // team-b's budget has room, team-a's does not: A is still refused.
    const a = await startSidecar(TOKEN_A);
    expect((await store(a.url, "a-3")).status).toBe(402);
    const b = await startSidecar(TOKEN_B);
    const before = charged();
    const res = await store(b.url, "b-1");
    expect(res.status).toBe(201);
    expect(charged() - before).toBe(1400n);
    const rows = await signerRows();
    expect(new Set(rows.filter((r) => r.client === "team-a").map((r) => r.paymentId)).size).toBe(1);
    expect(new Set(rows.filter((r) => r.client === "team-b").map((r) => r.paymentId)).size).toBe(1);
  });

  it("a wrong token is refused: 402 signer_refused (signer_unauthorized), nothing charged", async () => {
    const x = await startSidecar("not-a-token-the-signer-knows");
    const before = charged();
    const res = await store(x.url, "x-1");
    expect(res.status).toBe(402);
    const body = JSON.parse(res.body.toString("utf8")) as { proxy: Record<string, unknown> };
    expect(body.proxy.signer_code).toBe("signer_unauthorized");
    expect(charged()).toBe(before);
  });

  it("signer down: 502 signer_unavailable, nothing paid, the sidecar's own row released", async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const d = await startSidecar(TOKEN_A, `https://127.0.0.1:${port}`);
    const before = charged();
    const res = await store(d.url, "d-1");
    expect(res.status).toBe(502);
    expect(res.headers["x-stoka-proxy-error"]).toBe("signer_unavailable");
    expect(JSON.parse(res.body.toString("utf8")).error).toMatch(/nothing was paid/);
    expect(charged()).toBe(before);
    const local = await d.proxy.stores.payments.latest();
    expect(local.map((p) => p.state)).toEqual(["failed"]);
  });

  it("a signer that never answers: 502 within the bounded timeout", async () => {
    const held = new Set<net.Socket>();
    const silent = net.createServer((s) => held.add(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    cleanup.push(
      () =>
        new Promise<void>((r) => {
          for (const s of held) s.destroy();
          silent.close(() => r());
        }),
    );
    const port = (silent.address() as AddressInfo).port;
    const d = await startSidecar(TOKEN_A, `https://127.0.0.1:${port}`, 800);
    const before = charged();
    const started = Date.now();
    const res = await store(d.url, "d-2");
    expect(res.status).toBe(502);
    expect(res.headers["x-stoka-proxy-error"]).toBe("signer_unavailable");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(charged()).toBe(before);
  });

  it("wallet-auth goes through the signer: a delete is signed for team-a, refused for team-b", async () => {
    const a = await startSidecar(TOKEN_A);
    const owner = w.sandbox.wallet.publicKey();
    expect(w.sandbox.emulator.state.getBlob(owner, "a-1")).toBeDefined();
    const del = await curl({ proxy: a.url, method: "DELETE", url: `${BASE}/v1/object/a-1` });
    expect(del.status).toBe(204);
    expect(w.sandbox.emulator.state.getBlob(owner, "a-1")).toBeUndefined();
    // team-b's token has no wallet-auth routes: nothing forwarded, the blob stays.
    const b = await startSidecar(TOKEN_B);
    const refused = await curl({ proxy: b.url, method: "DELETE", url: `${BASE}/v1/object/b-1` });
    expect(refused.status).toBe(502);
    expect(JSON.parse(refused.body.toString("utf8"))).toMatchObject({
      code: "wallet_auth_failed",
      signer_code: "signer_refused",
    });
    expect(w.sandbox.emulator.state.getBlob(owner, "b-1")).toBeDefined();
  });

  it("the signer signs only stoka challenges for the route's own audience", async () => {
    const ok = await callSigner(TOKEN_A, "/signer/v1/wallet-auth", {
      route: "usage",
      message: "stoka-auth:usage:c1:n1:2030-01-01T00:00:00.000Z",
    });
    expect(ok.status).toBe(200);
    expect(ok.json.signature).toMatch(/^[0-9a-f]{128}$/);
    for (const message of [
      "stoka-auth:delete:c1:n1:2030-01-01T00:00:00.000Z", // another route's audience
      "stoka-auth:payments:c1:n1:2030-01-01T00:00:00.000Z", // a foreign audience
      "x".repeat(32), // could be a payment hash
      "sign anything you are given",
    ]) {
      const r = await callSigner(TOKEN_A, "/signer/v1/wallet-auth", { route: "usage", message });
      expect(r.status, message).toBe(403);
      expect(r.json.code).toBe("signer_refused");
    }
  });

  it("the signer re-checks what a pod asks: unknown host, a foreign payee, another token's payment", async () => {
    // A real 402 from the emulator, as a sidecar would forward it.
    const first = await fetch(`${w.sandbox.emulator.httpUrl}/v1/store`, {
      method: "POST",
      headers: { "x-stoka-key": "probe" },
      body: BODY,
    });
    expect(first.status).toBe(402);
    const challengeBody = await first.text();
    const challenge = JSON.parse(challengeBody) as { accepts: Record<string, unknown>[] };
    const accepted = challenge.accepts[0];
    const request = (host: string) => ({
      payment_id: "p1",
      request_id: "r1",
      method: "POST",
      host,
      port: 80,
      url: `${w.sandbox.emulator.httpUrl}/v1/store`,
    });
    const before = charged();
    const signs = w.signCalls();
    const elsewhere = await callSigner(TOKEN_B, "/signer/v1/payments", {
      request: request("evil.example"),
      challenge: { body: challengeBody },
      accepted,
    });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.json.code).toBe("terms_rejected");
    const thief = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7";
    const tampered = { ...challenge, accepts: [{ ...accepted, payTo: thief }] };
    const payee = await callSigner(TOKEN_B, "/signer/v1/payments", {
      request: request("test.api.stoka.space"),
      challenge: { body: JSON.stringify(tampered) },
      accepted: tampered.accepts[0],
    });
    expect(payee.status).toBe(403);
    expect(payee.json.code).toBe("terms_rejected");
    expect(w.signCalls()).toBe(signs);
    expect(charged()).toBe(before);
    // Another token's payment cannot be reported on (nor learned about).
    const other = await callSigner(TOKEN_B, `/signer/v1/payments/${aPaymentId}/outcome`, { state: "failed" });
    expect(other.status).toBe(404);
    expect(other.json.code).toBe("signer_payment_unknown");
    const noToken = await callSigner("", "/signer/v1/wallet");
    expect(noToken.status).toBe(401);
    // Each is a security event, with the token's client and never the token.
    type Code = "signer_unauthorized" | "signer_refused" | "terms_rejected";
    /** Stored in batches off the request path: waits (bounded) until `clients` are all there. */
    const events = async (code: Code, clients: string[]) => {
      let found: { client: string }[] = [];
      for (let i = 0; i < 60; i++) {
        found = await w.proxy.operator.store.list({ code });
        if (clients.every((c) => found.some((e) => e.client === c))) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      return found;
    };
    expect((await events("signer_unauthorized", [""])).length).toBeGreaterThan(0);
    // team-b's delete (no wallet-auth routes), team-a's foreign audiences.
    const refusedAuth = await events("signer_refused", ["team-a", "team-b"]);
    expect(new Set(refusedAuth.map((e) => e.client))).toEqual(new Set(["team-a", "team-b"]));
    const terms = await events("terms_rejected", ["team-b"]);
    expect(terms.map((e) => e.client)).toContain("team-b");
    expect(JSON.stringify(terms)).not.toContain(TOKEN_B);
  });

  it("gateway mode, as the Kubernetes example runs it: the app's base URL is the sidecar", async () => {
    const b = await startSidecar(TOKEN_B);
    const before = charged();
    const res = await curl({
      method: "POST",
      url: `${b.url}/v1/store`,
      headers: { "X-Stoka-Key": "g-1" },
      body: BODY,
    });
    expect(res.status, res.body.toString()).toBe(201);
    expect(charged() - before).toBe(1400n);
  });

  it("a burst from pods sharing a token spends at most its quota: 2 of 6 paid, the rest 402", async () => {
    const pods = await Promise.all([startSidecar(TOKEN_C), startSidecar(TOKEN_C), startSidecar(TOKEN_C)]);
    const before = charged();
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => store((pods[i % 3] as { url: string }).url, `c-${i}`)),
    );
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([201, 201, 402, 402, 402, 402]);
    for (const a of answers.filter((x) => x.status === 402))
      expect(JSON.parse(a.body.toString("utf8")).proxy.signer_code).toBe("budget_exceeded");
    expect(charged() - before).toBe(2800n);
  });

  it("a signer budget that asks for approval holds the pod's payment: approved → paid, denied → 402", async () => {
    const d = await startSidecar(TOKEN_D, signer.url, 15_000);
    const before = charged();
    const waiting = async () => {
      for (let i = 0; i < 100; i++) {
        const p = w.proxy.ctx.approvals.list()[0];
        if (p) return p;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error("no payment waits for approval");
    };
    const approved = store(d.url, "ap-1");
    const first = await waiting();
    expect(first.client).toBe("team-d");
    expect(charged()).toBe(before);
    w.proxy.ctx.approvals.decide(first.id, true, "test");
    expect((await approved).status).toBe(201);
    expect(charged() - before).toBe(1400n);
    const denied = store(d.url, "ap-2");
    w.proxy.ctx.approvals.decide((await waiting()).id, false, "test", "not today");
    const no = await denied;
    expect(no.status).toBe(402);
    expect(JSON.parse(no.body.toString("utf8")).proxy.signer_code).toBe("approval_denied");
    expect(charged() - before).toBe(1400n);
  });

  it("the signer's kill switch stops every sidecar: 402 with its reason, nothing signed", async () => {
    const b = await startSidecar(TOKEN_B);
    const sw = w.proxy.ctx.resilience.paymentSwitch;
    sw.set({ stopped: true }, { by: "test", reason: "incident 42", atMs: Date.now() });
    try {
      const before = charged();
      const signs = w.signCalls();
      const res = await store(b.url, "k-1");
      expect(res.status).toBe(402);
      const body = JSON.parse(res.body.toString("utf8")) as { proxy: Record<string, unknown> };
      expect(body.proxy.signer_code).toBe("payments_stopped");
      expect(String(body.proxy.reason)).toMatch(/incident 42/);
      expect(charged()).toBe(before);
      expect(w.signCalls()).toBe(signs);
    } finally {
      sw.set({ stopped: false }, { by: "test", reason: "", atMs: Date.now() });
    }
  });

  it("mTLS: a signer that asks for client certificates refuses a sidecar without one", async () => {
    const podCa = await createCertificateAuthority("pod client CA");
    const leaf = await issueLeafCertificate(signerCa, ["127.0.0.1"]);
    const strict = new SignerServer(
      { ...(w.config.signer as NonNullable<typeof w.config.signer>), ...leaf, clientCaPem: podCa.certPem },
      w.proxy.ctx,
    );
    await strict.listen();
    cleanup.push(() => strict.close());
    const before = charged();
    const without = await startSidecar(TOKEN_B, strict.url);
    const refused = await store(without.url, "m-1");
    expect(refused.status).toBe(502);
    expect(refused.headers["x-stoka-proxy-error"]).toBe("signer_unavailable");
    expect(charged()).toBe(before);
    // A certificate from another CA is refused the same way.
    const stranger = await startSidecar(TOKEN_B, strict.url, 5000, await clientCertificate(signerCa, "x"));
    expect((await store(stranger.url, "m-2")).status).toBe(502);
    const withCert = await startSidecar(
      TOKEN_B,
      strict.url,
      5000,
      await clientCertificate(podCa, "orders-pod"),
    );
    const paid = await store(withCert.url, "m-3");
    expect(paid.status).toBe(201);
    expect(charged() - before).toBe(1400n);
  });

  it("the signer's ledger shows each payment once, under the right client, one per emulator charge", async () => {
    const rows = await signerRows();
    const byPayment = new Map<string, LedgerRow[]>();
    for (const r of rows) byPayment.set(r.paymentId, [...(byPayment.get(r.paymentId) ?? []), r]);
    const sent = [...byPayment.values()].filter((rs) => rs.some((r) => r.state === "sent"));
    for (const rs of byPayment.values()) {
      expect(rs.filter((r) => r.state === "reserved")).toHaveLength(1);
      expect(new Set(rs.map((r) => r.client)).size).toBe(1);
    }
    for (const rs of sent) expect(rs.filter((r) => r.state === "sent")).toHaveLength(1);
    const charges = w.sandbox.emulator.state.charges;
    expect(sent).toHaveLength(charges.length);
    const settledTx = rows.filter((r) => r.state === "settled").map((r) => r.tx);
    expect(settledTx.sort()).toEqual(charges.map((c) => c.tx).sort());
    expect(sent.map((rs) => rs[0]?.client).sort()).toEqual([
      "team-a",
      "team-b",
      "team-b",
      "team-b",
      "team-c",
      "team-c",
      "team-d",
    ]);
    expect(w.logs()).not.toContain(TOKEN_A);
    expect(w.logs()).not.toContain(TOKEN_B);
    // The signer's metrics: what each client was signed, and its refusals.
    const metrics = await w.proxy.registry.metrics();
    expect(metrics).toMatch(/stoka_proxy_signer_signed_atomic_total\{client="team-a"\} 1400\b/);
    expect(metrics).toMatch(
      /stoka_proxy_signer_requests_total\{client="team-a",endpoint="payments",outcome="refused"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /stoka_proxy_signer_requests_total\{client="unknown",endpoint="payments",outcome="unauthorized"\} 1\b/,
    );
    expect(metrics).not.toContain(TOKEN_A);
  });
});
