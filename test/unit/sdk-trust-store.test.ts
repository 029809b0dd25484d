import https from "node:https";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import { sdkAxios, trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";

/** An HTTPS origin on 127.0.0.1 with a leaf from its own CA. */
async function origin(name: string): Promise<{ url: string; caPem: string; close: () => void }> {
  const ca = await createCertificateAuthority(name, 1);
  const leaf = await issueLeafCertificate(ca, ["127.0.0.1"]);
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (_req, res) => res.end("ok"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `https://127.0.0.1:${port}/`, caPem: ca.certPem, close: () => server.close() };
}

/** A GET with the SDK's axios (where its RPC and Horizon calls go), on a new connection. */
async function get(url: string): Promise<string> {
  const axios = sdkAxios() as unknown as {
    get(u: string, c: { headers: Record<string, string>; responseType: string }): Promise<{ data: string }>;
  };
  return (await axios.get(url, { headers: { connection: "close" }, responseType: "text" })).data;
}

/** A GET on Node's global agent: other code's HTTPS, which the SDK's trust must not change. */
function globalGet(url: string): Promise<string> {
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

  it("is the SDK's own: Node's global agent neither trusts the SDK's extra CA nor loses a request's own `ca`", async () => {
    await expect(globalGet(trusted.url)).rejects.toThrow(/certificate/i);
    const own = await new Promise<string>((resolve, reject) => {
      https
        .get(trusted.url, { ca: trusted.caPem, headers: { connection: "close" } }, (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => resolve(body));
        })
        .on("error", reject);
    });
    expect(own).toBe("ok");
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
