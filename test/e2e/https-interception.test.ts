import https from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProxyAgent, request } from "undici";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import { curl, runCurl, runGo, runPython, runUndici, undiciProxyAgent } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { expectPaidScenario } from "../support/scenario.js";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * HTTPS through the proxy: paid hosts are intercepted with the proxy's CA and paid exactly as
 * over HTTP; every other host is tunnelled blindly with its own certificate.
 */
const BASE = "https://test.api.stoka.space";

let w: ProxyWorld;
let caFile: string;
let origin: https.Server;
let originUrl: string;
let originCaFile: string;
beforeAll(async () => {
  w = await startProxyWorld();
  caFile = w.config.tls.caCertFile ?? "";
  // An HTTPS origin that is not a paid host, with a CA of its own.
  const ca = await createCertificateAuthority("origin CA");
  const leaf = await issueLeafCertificate(ca, ["localhost", "127.0.0.1"]);
  originCaFile = join(mkdtempSync(join(tmpdir(), "stoka-origin-")), "ca.pem");
  writeFileSync(originCaFile, ca.certPem);
  origin = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" }).end("origin says hi");
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", () => resolve()));
  originUrl = `https://localhost:${(origin.address() as AddressInfo).port}`;
});
afterAll(async () => {
  origin.closeAllConnections();
  await new Promise((r) => origin.close(r));
  await w.close();
});

const wallet = () => w.sandbox.wallet.publicKey();

describe("HTTPS_PROXY with real clients: paid and signed exactly as over HTTP", () => {
  it("curl --cacert", async () => {
    await expectPaidScenario(w, "tls-curl", () =>
      runCurl(w.proxyUrl, BASE, "tls-curl", wallet(), ["--cacert", caFile]),
    );
  });

  it("Python requests (REQUESTS_CA_BUNDLE)", async () => {
    await expectPaidScenario(w, "tls-py", () =>
      runPython(w.proxyUrl, BASE, "tls-py", wallet(), { REQUESTS_CA_BUNDLE: caFile }),
    );
  });

  it("Node undici ProxyAgent with the CA", async () => {
    const agent = undiciProxyAgent(w.proxyUrl, w.sandbox.ca.certPem);
    await expectPaidScenario(w, "tls-undici", () => runUndici(agent, BASE, "tls-undici", wallet()));
    await agent.close(); // its keep-alive tunnels would count in the leak check below
  });

  it("Go net/http (SSL_CERT_FILE)", async () => {
    await expectPaidScenario(w, "tls-go", () =>
      runGo(w.proxyUrl, BASE, "tls-go", wallet(), { SSL_CERT_FILE: caFile }),
    );
  }, 240_000);
});

describe("only paid hosts are intercepted", () => {
  it("a non-paid HTTPS host is tunnelled blindly: the client sees the origin's own certificate", async () => {
    const ok = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: `${originUrl}/x`,
      extra: ["--cacert", originCaFile],
    });
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe("origin says hi");
    // Trusting only the proxy's CA fails: the certificate is the origin's, not ours.
    await expect(
      curl({ proxy: w.proxyUrl, method: "GET", url: `${originUrl}/x`, extra: ["--cacert", caFile] }),
    ).rejects.toThrow(/exit code 60|certificate/i);
  });

  it("a client that does not trust the CA fails the handshake; nothing is paid", async () => {
    const before = w.charged();
    const signs = w.signCalls();
    await expect(
      curl({
        proxy: w.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "untrusted" },
        body: Buffer.from("x"),
      }),
    ).rejects.toThrow(/exit code 60|certificate/i);
    expect(w.charged()).toBe(before);
    expect(w.signCalls()).toBe(signs);
  });

  it("without interception, TLS to a paid host is refused, never tunnelled unpaid", async () => {
    const world = await startProxyWorld((c) => (c.tls.intercept = false));
    try {
      await expect(
        curl({
          proxy: world.proxyUrl,
          method: "GET",
          url: `${BASE}/.well-known/stoka.json`,
          extra: ["--cacert", caFile],
        }),
      ).rejects.toThrow();
      expect(world.sandbox.emulator.state.requests.get("manifest") ?? 0).toBe(0);
    } finally {
      await world.close();
    }
  });

  it("`stoka-proxy ca` material: the CA file is PEM and the intercepted leaf chains to it", async () => {
    const agent = undiciProxyAgent(w.proxyUrl, w.sandbox.ca.certPem);
    const res = await request(`${BASE}/.well-known/stoka.json`, { dispatcher: agent });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await agent.close();
  });
});

describe("egress policy for blind tunnels", () => {
  it("a denied host gets 403 on CONNECT; an allowed one connects", async () => {
    const world = await startProxyWorld((c) => {
      c.egress = {
        allowHosts: ["localhost"],
        denyHosts: ["*.blocked.test"],
        allowPorts: [],
        denyPrivate: false,
      };
    });
    try {
      const allowed = await curl({
        proxy: world.proxyUrl,
        method: "GET",
        url: `${originUrl}/x`,
        extra: ["--cacert", originCaFile],
      });
      expect(allowed.status).toBe(200);
      await expect(
        curl({ proxy: world.proxyUrl, method: "GET", url: "https://api.blocked.test/x" }),
      ).rejects.toThrow(/403/);
      await expect(
        curl({ proxy: world.proxyUrl, method: "GET", url: "https://example.invalid/x" }),
      ).rejects.toThrow(/403/);
    } finally {
      await world.close();
    }
  });

  it("private and loopback targets are denied when the policy says so", async () => {
    const world = await startProxyWorld((c) => {
      c.egress = { allowHosts: [], denyHosts: [], allowPorts: [], denyPrivate: true };
    });
    try {
      const port = (origin.address() as AddressInfo).port;
      await expect(
        curl({ proxy: world.proxyUrl, method: "GET", url: `https://127.0.0.1:${port}/x`, extra: ["-k"] }),
      ).rejects.toThrow(/403/);
      const plain = await curl({ proxy: world.proxyUrl, method: "GET", url: `http://127.0.0.1:${port}/x` });
      expect(plain.status).toBe(403);
      // Paid hosts are not subject to egress rules: they are configured on purpose.
      const paid = await curl({
        proxy: world.proxyUrl,
        method: "GET",
        url: `${BASE}/.well-known/stoka.json`,
        extra: ["--cacert", world.config.tls.caCertFile ?? ""],
      });
      expect(paid.status).toBe(200);
    } finally {
      await world.close();
    }
  });
});

describe("load", () => {
  it("200 concurrent tunnels, mixed intercepted and blind, all complete; no socket leak", async () => {
    const agent = new ProxyAgent({
      uri: w.proxyUrl,
      connections: 200,
      requestTls: {
        ca: [w.sandbox.ca.certPem, readFileSync(originCaFile, "utf8")],
      },
    });
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const url = i % 2 === 0 ? `${BASE}/.well-known/stoka.json` : `${originUrl}/n${i}`;
        const res = await request(url, { dispatcher: agent });
        await res.body.dump();
        return res.statusCode;
      }),
    );
    expect(results.filter((s) => s === 200)).toHaveLength(200);
    await agent.close();
    const deadline = Date.now() + 10_000;
    let open = await w.proxy.openConnections();
    while (open > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      open = await w.proxy.openConnections();
    }
    expect(open).toBe(0);
  }, 60_000);
});
