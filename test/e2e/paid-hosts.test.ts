import { mkdtempSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keypair } from "@stellar/stellar-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import { resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import { createLogger } from "../../src/observability/logger.js";
import { StokaProxy } from "../../src/proxy/server.js";
import { StokaEmulator } from "../../src/sandbox/emulator.js";
import { issueLeafCertificate } from "../../src/tls/certificates.js";
import { curl } from "../support/clients.js";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { CountingSigner, startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * Paid hosts by authority: `name` (any port) or `name:port` (that port only, and it wins). Two
 * stoka emulators on one host at different ports, each with its own payee, must each be paid per
 * their own entry; an entry without `upstream` keeps the scheme and port the app used.
 */
let w: ProxyWorld;
let b: StokaEmulator;
let origin: Origin;
const proxies: StokaProxy[] = [];

beforeAll(async () => {
  w = await startProxyWorld();
  // A second stoka on the same chain, with a payee of its own, on 127.0.0.1 at another port.
  const leaf = await issueLeafCertificate(w.sandbox.ca, ["127.0.0.1"]);
  b = new StokaEmulator({
    chain: w.sandbox.chain,
    payTo: Keypair.random().publicKey(),
    tls: leaf,
    switches: { popWaitSeconds: 0 },
  });
  await b.listen();
  origin = await startOrigin();
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await origin.close();
  await b.close();
  await w.close();
});

const a = () => w.sandbox.emulator;
const portOf = (url: string) => Number(new URL(url).port);
const wallet = () => w.sandbox.wallet.publicKey();

/** The paid hosts the config loader makes of these `paid_hosts` entries. */
const paidHostsFrom = (entries: unknown[]) =>
  resolveConfig(configFileSchema.parse({ paid_hosts: entries }), "(test)", {}).paidHosts;

/** A proxy on the one sandbox with other paid hosts (and gateway upstream). */
async function proxyWith(configure: (c: ProxyConfig) => void): Promise<{ url: string; signs: () => number }> {
  const config: ProxyConfig = {
    ...w.config,
    listen: { host: "127.0.0.1", port: 0 },
    dataDir: mkdtempSync(join(tmpdir(), "stoka-paid-hosts-")),
  };
  configure(config);
  const proxy = new StokaProxy(config, { logger: createLogger("silent") });
  await proxy.listen();
  proxies.push(proxy);
  const counting = new CountingSigner(proxy.ctx.signer ?? w.proxy.ctx.signer!);
  proxy.ctx.signer = counting;
  return { url: proxy.url, signs: () => counting.calls };
}

const store = (proxy: string, url: string, extra: string[] = []) =>
  curl({
    proxy,
    method: "POST",
    url: `${url}/v1/store`,
    headers: { "X-Stoka-Key": `ph-${Math.random().toString(36).slice(2)}` },
    body: Buffer.from("x".repeat(42)),
    extra,
  });

describe("two paid services on one host, at different ports", () => {
  it("each is paid per its own entry (own upstream port, own payee), HTTP and intercepted HTTPS", async () => {
    const p = await proxyWith((c) => {
      c.paidHosts = paidHostsFrom([
        { host: `127.0.0.1:${portOf(a().httpUrl)}`, pay_to: [a().payTo] },
        { host: `127.0.0.1:${portOf(a().httpsUrl)}`, pay_to: [a().payTo] },
        { host: `127.0.0.1:${portOf(b.httpUrl)}`, pay_to: [b.payTo] },
      ]);
    });
    const beforeA = a().chargedTotal(wallet());
    const beforeB = b.chargedTotal(wallet());

    const toA = await store(p.url, a().httpUrl);
    expect(toA.status).toBe(201);
    expect(toA.headers["x-stoka-proxy-paid"]).toBe("1400");
    expect(a().chargedTotal(wallet()) - beforeA).toBe(1400n);
    expect(b.chargedTotal(wallet())).toBe(beforeB);

    const toB = await store(p.url, b.httpUrl);
    expect(toB.status).toBe(201);
    expect(toB.headers["x-stoka-proxy-paid"]).toBe("1400");
    expect(b.chargedTotal(wallet()) - beforeB).toBe(1400n);
    expect(a().chargedTotal(wallet()) - beforeA).toBe(1400n);

    // CONNECT 127.0.0.1:<https port>, intercepted: the upstream is https://127.0.0.1:<that port>.
    const overTls = await store(p.url, a().httpsUrl, ["--cacert", w.config.tls.caCertFile ?? ""]);
    expect(overTls.status).toBe(201);
    expect(a().chargedTotal(wallet()) - beforeA).toBe(2800n);
    expect(p.signs()).toBe(3);
  });

  it("a name:port entry does not match another port of that host", async () => {
    const p = await proxyWith((c) => {
      c.paidHosts = paidHostsFrom([{ host: `127.0.0.1:${portOf(a().httpUrl)}`, pay_to: [a().payTo] }]);
    });
    // The origin (127.0.0.1, another port) is not a paid host: its 402 passes through unpaid.
    const r = await curl({ proxy: p.url, method: "GET", url: `http://127.0.0.1:${origin.port}/pay-me` });
    expect(r.status).toBe(402);
    expect(r.headers["x-stoka-proxy-error"]).toBeUndefined();
    // And b, on yet another port, is not paid either.
    const before = b.chargedTotal(wallet());
    const toB = await store(p.url, b.httpUrl);
    expect(toB.status).toBe(402);
    expect(b.chargedTotal(wallet())).toBe(before);
    expect(p.signs()).toBe(0);
  });

  it("the more specific entry wins; a name entry covers the other ports with its own payee", async () => {
    const p = await proxyWith((c) => {
      c.paidHosts = paidHostsFrom([
        { host: "127.0.0.1", pay_to: [Keypair.random().publicKey()] },
        { host: `127.0.0.1:${portOf(a().httpUrl)}`, pay_to: [a().payTo] },
      ]);
    });
    const toA = await store(p.url, a().httpUrl);
    expect(toA.status).toBe(201);
    // b is reached at the port the app used (the name entry has no upstream), and refused:
    // its payee is not the name entry's.
    const storesAtB = b.state.requests.get("store") ?? 0;
    const before = b.chargedTotal(wallet());
    const toB = await store(p.url, b.httpUrl);
    expect(toB.status).toBe(402);
    expect(toB.headers["x-stoka-proxy-error"]).toBe("terms_rejected");
    expect(b.state.requests.get("store") ?? 0).toBe(storesAtB + 1);
    expect(b.chargedTotal(wallet())).toBe(before);
    expect(p.signs()).toBe(1);
  });

  it("gateway mode finds its paid host by the gateway upstream's authority", async () => {
    const p = await proxyWith((c) => {
      c.gatewayUpstream = new URL(b.httpUrl);
      c.paidHosts = paidHostsFrom([
        { host: `127.0.0.1:${portOf(b.httpUrl)}`, pay_to: [Keypair.random().publicKey()] },
      ]);
    });
    const before = b.chargedTotal(wallet());
    const r = await store("", p.url);
    // The entry's payee is not b's: refused before signing, whatever b's manifest says.
    expect(r.status).toBe(402);
    expect(r.headers["x-stoka-proxy-error"]).toBe("terms_rejected");
    expect(b.chargedTotal(wallet())).toBe(before);
    expect(p.signs()).toBe(0);
  });
});

const ipv6 = await new Promise<boolean>((resolve) => {
  const s = net.createServer();
  s.once("error", () => resolve(false));
  s.listen(0, "::1", () => s.close(() => resolve(true)));
});

describe("an IPv6 literal paid host", () => {
  it.skipIf(!ipv6)("[::1]:port is matched and paid (skipped when ::1 is not available here)", async () => {
    const c6 = new StokaEmulator({
      chain: w.sandbox.chain,
      payTo: Keypair.random().publicKey(),
      host: "::1",
      switches: { popWaitSeconds: 0 },
    });
    const { httpUrl } = await c6.listen();
    try {
      const port = Number(/:(\d+)$/.exec(httpUrl)?.[1]);
      const p = await proxyWith((c) => {
        c.paidHosts = paidHostsFrom([{ host: `[::1]:${port}`, pay_to: [c6.payTo] }]);
      });
      const r = await store(p.url, `http://[::1]:${port}`, ["-g"]);
      expect(r.status).toBe(201);
      expect(c6.chargedTotal(wallet())).toBe(1400n);
    } finally {
      await c6.close();
    }
  });
});
