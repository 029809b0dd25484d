import https from "node:https";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import { trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";

/** An HTTPS origin on 127.0.0.1 with a leaf from its own CA. */
async function origin(name: string): Promise<{ url: string; caPem: string; close: () => void }> {
  const ca = await createCertificateAuthority(name, 1);
  const leaf = await issueLeafCertificate(ca, ["127.0.0.1"]);
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => res.end("ok"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `https://127.0.0.1:${port}/`, caPem: ca.certPem, close: () => server.close() };
}

/** A GET on Node's global agent (where the SDK's RPC clients go), on a new connection. */
function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { headers: { connection: "close" } }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

describe("the SDK's HTTPS trust store (src/stellar/sdk-http-guard.ts)", () => {
  let trusted: Awaited<ReturnType<typeof origin>>;
  let stranger: Awaited<ReturnType<typeof origin>>;
  beforeAll(async () => {
    trusted = await origin("rpc test CA");
    stranger = await origin("unknown CA");
    trustExtraCertificates([trusted.caPem]);
  });
  afterAll(() => {
    trusted.close();
    stranger.close();
  });

  it("trusts the configured CA and still refuses any other", async () => {
    expect(await get(trusted.url)).toBe("ok");
    await expect(get(stranger.url)).rejects.toThrow(/certificate/i);
  });

  it("is parsed once, not again for each new connection", async () => {
    const spy = vi.spyOn(tls, "createSecureContext");
    try {
      for (let i = 0; i < 5; i++) expect(await get(trusted.url)).toBe("ok");
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });
});
