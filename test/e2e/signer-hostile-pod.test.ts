import https from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { budgetsForRow } from "../../src/budget/ledger-spend.js";
import type { LedgerRow } from "../../src/ledger/entry.js";
import { hashToken } from "../../src/proxy/client-identity.js";
import { SignerServer } from "../../src/proxy/signer-server.js";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import type { CertificateAuthority } from "../../src/tls/certificates.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * The signer role against a pod that holds a valid token and lies in what it asks
 * (docs/security.md, Keyless sidecars): what the signer books must be its own idea of the
 * request, never the pod's, and no report a pod sends gives budget back.
 */
const TOKEN = "pod-token-of-hostile-team-0123456789";
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
    ];
    c.signer = {
      listen: { host: "127.0.0.1", port: 0 },
      certPem: leaf.certPem,
      keyPem: leaf.keyPem,
      tokens: [{ client: "hostile", tokenSha256: hashToken(TOKEN), walletAuthRoutes: [] }],
    };
  });
  signer = new SignerServer(w.config.signer as NonNullable<typeof w.config.signer>, w.proxy.ctx);
  await signer.listen();
}, 60_000);

afterAll(async () => {
  await signer?.close();
  await w?.close();
});

function callSigner(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, signer.url),
      {
        method: "POST",
        agent: new https.Agent({ ca: ca.certPem }),
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString("utf8")));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text || "{}") }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
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
  it("a path that names another host (`//evil.example/…`) never moves the booked URL off the paid host", async () => {
    const { body, accepted } = await storeChallenge();
    const r = await callSigner("/signer/v1/payments", {
      request: {
        payment_id: "p-evil",
        request_id: "r-evil",
        method: "POST",
        host: "test.api.stoka.space",
        port: 80,
        url: "http://test.api.stoka.space//evil.example/v1/store",
      },
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
    expect(budgetsForRow(rows[1] as LedgerRow, scope).map((b) => b.name)).toEqual(["hostile-day"]);
  });

  it("a report of `failed` after being signed keeps the money counted (indeterminate)", async () => {
    const { body, accepted } = await storeChallenge();
    const r = await callSigner("/signer/v1/payments", {
      request: {
        payment_id: "p-f",
        request_id: "r-f",
        method: "POST",
        host: "test.api.stoka.space",
        port: 80,
        url: "http://test.api.stoka.space/v1/store",
      },
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
