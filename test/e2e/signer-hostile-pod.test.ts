import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { budgetsForRow } from "../../src/budget/ledger-spend.js";
import type { LedgerRow } from "../../src/ledger/entry.js";
import { resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import { createLogger } from "../../src/observability/logger.js";
import { hashToken } from "../../src/proxy/client-identity.js";
import { StokaProxy } from "../../src/proxy/server.js";
import { SignerServer } from "../../src/proxy/signer-server.js";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import type { CertificateAuthority } from "../../src/tls/certificates.js";
import { curl } from "../support/clients.js";
import { callSignerApi } from "../support/signer-client.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * The signer role against a pod that holds a valid token and lies in what it asks
 * (docs/security.md, Keyless sidecars): what the signer books must be its own idea of the
 * request, never the pod's, and no report a pod sends gives budget back.
 */
const TOKEN = "pod-token-of-hostile-team-0123456789";
const STRANGER = "pod-token-no-budget-names-0123456789";
const BODY = "r".repeat(42);

let w: ProxyWorld;
let signer: SignerServer;
let ca: CertificateAuthority;

beforeAll(async () => {
  ca = await createCertificateAuthority("hostile-pod test CA");
  const leaf = await issueLeafCertificate(ca, ["127.0.0.1"]);
  w = await startProxyWorld((c) => {
    c.budgets = [
      {
        name: "hostile-day",
        match: { hosts: ["test.api.stoka.space"], clients: ["hostile"] },
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 100_000n }],
      },
      // The gateway's own catch-all: it matches every client, pods' tokens included.
      {
        name: "gateway-own",
        match: {},
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 10_000_000n }],
      },
    ];
    c.signer = {
      listen: { host: "127.0.0.1", port: 0 },
      certPem: leaf.certPem,
      keyPem: leaf.keyPem,
      tokens: [
        { client: "hostile", tokenSha256: hashToken(TOKEN), walletAuthRoutes: [] },
        { client: "stranger", tokenSha256: hashToken(STRANGER), walletAuthRoutes: [] },
      ],
    };
  });
  signer = new SignerServer(w.config.signer as NonNullable<typeof w.config.signer>, w.proxy.ctx);
  await signer.listen();
}, 60_000);

const cleanup: (() => Promise<void> | void)[] = [];

afterAll(async () => {
  for (const c of cleanup) await c();
  await signer?.close();
  await w?.close();
});

function callSigner(path: string, body: unknown, token = TOKEN) {
  return callSignerApi(signer.url, ca.certPem, token, path, body);
}

/** The payment request a pod reports with its challenge (a store on the stoka test host). */
function storeRequest(id: string) {
  return {
    payment_id: `p-${id}`,
    request_id: `r-${id}`,
    method: "POST",
    host: "test.api.stoka.space",
    port: 80,
    url: "http://test.api.stoka.space/v1/store",
  };
}

async function rowsOf(paymentId: string): Promise<LedgerRow[]> {
  const rows: LedgerRow[] = [];
  for await (const r of w.proxy.stores.payments.rows()) if (r.paymentId === paymentId) rows.push(r);
  return rows;
}

/** A real 402 from the emulator, as a sidecar would forward it. */
async function storeChallenge(): Promise<{ body: string; accepted: unknown }> {
  const first = await fetch(`${w.sandbox.emulator.httpUrl}/v1/store`, {
    method: "POST",
    headers: { "x-stoka-key": "probe" },
    body: BODY,
  });
  expect(first.status).toBe(402);
  const body = await first.text();
  return { body, accepted: (JSON.parse(body) as { accepts: unknown[] }).accepts[0] };
}

describe("the signer role against a hostile pod", () => {
  it("a token no budget names cannot spend a budget shared with the gateway's own traffic", async () => {
    const { body, accepted } = await storeChallenge();
    const before = w.sandbox.emulator.state.charges.length;
    const r = await callSigner(
      "/signer/v1/payments",
      {
        request: storeRequest("stranger"),
        challenge: { body },
        accepted,
      },
      STRANGER,
    );
    expect(r.json.code, JSON.stringify(r.json)).toBe("no_budget");
    expect(r.json.header).toBeUndefined();
    const rows: LedgerRow[] = [];
    for await (const row of w.proxy.stores.payments.rows()) if (row.client === "stranger") rows.push(row);
    expect(rows).toEqual([]);
    expect(w.sandbox.emulator.state.charges.length).toBe(before);
  });

  it("a path that names another host (`//evil.example/…`) never moves the booked URL off the paid host", async () => {
    const { body, accepted } = await storeChallenge();
    const r = await callSigner("/signer/v1/payments", {
      request: { ...storeRequest("evil"), url: "http://test.api.stoka.space//evil.example/v1/store" },
      challenge: { body },
      accepted,
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const rows = await rowsOf(r.json.payment_id as string);
    expect(rows.map((x) => x.state)).toEqual(["reserved", "sent"]);
    // The ledger's URL is what `budgets restore` matches hosts on, and what an approver sees.
    const upstream = new URL(w.sandbox.emulator.httpUrl);
    for (const row of rows) {
      expect(new URL(row.url).host).toBe(upstream.host);
      expect(row.url).not.toMatch(/^https?:\/\/evil\.example/);
    }
    // Rebuilt from the ledger (`budgets restore`), it counts against the budget it was reserved in.
    const scope = {
      budgets: w.config.budgets,
      paidHosts: w.config.paidHosts,
      gatewayUpstream: w.config.gatewayUpstream,
    };
    expect(budgetsForRow(rows[1] as LedgerRow, scope).map((b) => b.name)).toContain("hostile-day");
  });

  it("a report of `failed` after being signed keeps the money counted (indeterminate)", async () => {
    const { body, accepted } = await storeChallenge();
    const r = await callSigner("/signer/v1/payments", {
      request: storeRequest("f"),
      challenge: { body },
      accepted,
    });
    expect(r.status).toBe(200);
    const id = r.json.payment_id as string;
    const report = await callSigner(`/signer/v1/payments/${id}/outcome`, { state: "failed" });
    expect(report.json.state).toBe("indeterminate");
    // A second report (replayed) finds nothing open: it cannot turn it into anything else.
    const again = await callSigner(`/signer/v1/payments/${id}/outcome`, { state: "settled" });
    expect(again.status).toBe(404);
    expect((await rowsOf(id)).map((x) => x.state)).toEqual(["reserved", "sent", "indeterminate"]);
  });
});

describe("a signer that dies mid-answer", () => {
  it("signed and booked `sent` after the sidecar gave up: the sidecar answers 502 and sends nothing, the signer still counts it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stoka-sidecar-"));
    writeFileSync(join(dir, "token"), `${TOKEN}\n`, { mode: 0o600 });
    writeFileSync(join(dir, "ca.pem"), ca.certPem);
    const config = resolveConfig(
      configFileSchema.parse({
        listen: "127.0.0.1:0",
        admin_listen: "127.0.0.1:0",
        stoka_env: "test",
        paid_hosts: [{ host: "test.api.stoka.space", upstream: w.sandbox.emulator.httpUrl }],
        wallet: {
          remote_signer: {
            url: signer.url,
            token_file: join(dir, "token"),
            ca_file: join(dir, "ca.pem"),
            timeout_ms: 600,
          },
        },
        tls: { intercept: false },
        data_dir: join(dir, "data"),
      }),
      "(sidecar)",
      {},
    );
    const sink = new PassThrough();
    let logs = "";
    sink.on("data", (c: Buffer) => (logs += c.toString("utf8")));
    const sidecar = new StokaProxy(config, { logger: createLogger("info", sink) });
    await sidecar.listen();
    cleanup.push(async () => {
      await sidecar.close();
      rmSync(dir, { recursive: true, force: true });
    });
    // The gateway's real key signs, but only after the sidecar's timeout has passed.
    const real = w.proxy.ctx.signer;
    if (!real) throw new Error("the gateway has no signer");
    let signed: () => void = () => undefined;
    const signedLate = new Promise<void>((r) => (signed = r));
    w.proxy.ctx.signer = Object.assign(Object.create(real) as typeof real, {
      sign: async (offer: Parameters<typeof real.sign>[0]) => {
        await new Promise((r) => setTimeout(r, 1200));
        const header = await real.sign(offer);
        signed();
        return header;
      },
    });
    const before = w.charged();
    const charges = w.sandbox.emulator.state.charges.length;
    let res;
    try {
      res = await curl({
        proxy: sidecar.url,
        method: "POST",
        url: "http://test.api.stoka.space/v1/store",
        headers: { "X-Stoka-Key": "late-1" },
        body: Buffer.from(BODY),
      });
      await signedLate;
    } finally {
      w.proxy.ctx.signer = real;
    }
    expect(res.status).toBe(502);
    expect(res.headers["x-stoka-proxy-error"]).toBe("signer_unavailable");
    // The sidecar's row is released (it sent no header); nothing was charged.
    expect((await sidecar.stores.payments.latest()).map((p) => p.state)).toEqual(["failed"]);
    // The signer booked it `sent` before answering: still counted, until reconcile says otherwise.
    let states: string[] = [];
    for (let i = 0; i < 60; i++) {
      const all: LedgerRow[] = [];
      for await (const r of w.proxy.stores.payments.rows()) if (r.requestId !== "r-evil") all.push(r);
      const mine = all.filter((r) => r.url.endsWith("/v1/store") && r.client === "hostile");
      const last = mine.at(-1);
      states = last ? mine.filter((r) => r.paymentId === last.paymentId).map((r) => r.state) : [];
      if (states.includes("sent")) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(states).toEqual(["reserved", "sent"]);
    expect(w.charged()).toBe(before);
    expect(w.sandbox.emulator.state.charges.length).toBe(charges);
    expect(logs).not.toContain(TOKEN);
    expect(w.logs()).not.toContain(TOKEN);
  }, 20_000);
});
