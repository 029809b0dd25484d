import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * Attack review of b5d9155 (undici upstream client), questions 1 and 5 on the real payment
 * flow: the emulator behind a recording TCP relay (every byte the proxy sends, per connection).
 * The payment-carrying retry must go out on Node's client on a fresh connection (ledger `sent`
 * before the first byte), never on undici's pool; the proxy's payment header and its
 * `Authorization: Stellar` never reach the app or the logs.
 */
const BASE = "http://test.api.stoka.space";
let w: ProxyWorld;
const conns: { bytes: string }[] = [];
let relay: net.Server;

async function recordingRelay(target: number): Promise<number> {
  relay = net.createServer((client) => {
    const rec = { bytes: "" };
    conns.push(rec);
    const up = net.connect(target, "127.0.0.1");
    client.on("error", () => undefined);
    up.on("error", () => undefined);
    client.on("data", (c: Buffer) => {
      rec.bytes += c.toString("latin1");
      up.write(c);
    });
    up.on("data", (c: Buffer) => client.write(c));
    client.on("close", () => up.destroy());
    up.on("close", () => client.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", () => r()));
  return (relay.address() as AddressInfo).port;
}

beforeAll(async () => {
  w = await startProxyWorld(async (c, sandbox) => {
    const port = await recordingRelay(Number(new URL(sandbox.emulator.httpUrl).port));
    c.paidHosts = c.paidHosts.map((e) => ({ ...e, upstream: new URL(`http://127.0.0.1:${port}`) }));
    c.resilience.retry.maxAttempts = 1;
    c.resilience.rateLimit = null;
    c.resilience.breaker = null;
  });
});
afterAll(async () => {
  await w?.close();
  await new Promise<void>((r) => relay.close(() => r()));
});
beforeEach(() => {
  resetSwitches(w.sandbox, 0);
});

/** Every request head the proxy wrote on a connection (bodies skipped by Content-Length). */
function heads(bytes: string): string[] {
  const out: string[] = [];
  let rest = bytes;
  for (let i = 0; i < 50 && rest.length > 0; i++) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) break;
    const head = rest.slice(0, end);
    out.push(head);
    const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    rest = rest.slice(end + 4 + (len ? Number(len[1]) : 0));
  }
  return out;
}

const PAYMENT_HEADER = /\r\n(x-payment|payment-signature):/i;

describe("the payment-carrying retry", () => {
  it("is sent once, alone on a fresh connection from Node's client (never on undici's pool)", async () => {
    const r = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "attack-undici-1" },
      body: Buffer.from("z".repeat(42)),
    });
    expect(r.status).toBe(201);
    expect(w.signCalls()).toBeGreaterThanOrEqual(1);
    const all = conns.map((c) => heads(c.bytes));
    const paid = all.flatMap((hs, i) =>
      hs.filter((h) => PAYMENT_HEADER.test(h) && h.includes("attack-undici-1")).map((h) => ({ i, h })),
    );
    expect(paid).toHaveLength(1);
    const only = paid[0] as { i: number; h: string };
    // Alone on its connection: the pool did not carry it, and nothing rode after it.
    expect(all[only.i]).toHaveLength(1);
    // Node's fresh agent (keepAlive false) writes "Connection: close"; undici writes
    // "connection: keep-alive" (lower case) on its pooled sockets.
    expect(only.h).toMatch(/\r\nConnection: close(\r\n|$)/);
    expect(only.h).not.toMatch(/\r\nconnection: keep-alive/);
    // The unpaid first attempt did go out on undici (the change under review is in effect).
    const unpaid = all
      .flat()
      .find(
        (h) => h.startsWith("POST /v1/store") && h.includes("attack-undici-1") && !PAYMENT_HEADER.test(h),
      );
    expect(unpaid).toMatch(/\r\nconnection: keep-alive/);
  });

  it("the app's answer and the logs carry no payment header and no Authorization: Stellar", async () => {
    const r = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "attack-undici-2" },
      body: Buffer.from("y".repeat(42)),
    });
    expect(r.status).toBe(201);
    const names = Object.keys(r.headers).map((k) => k.toLowerCase());
    expect(names).not.toContain("x-payment");
    expect(names).not.toContain("payment-signature");
    expect(JSON.stringify(r.headers)).not.toMatch(/Stellar /);
    // A wallet-signed route: Authorization: Stellar … goes up on undici (pooled); not back, not logged.
    const usage = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/me/usage?days=1` });
    expect(usage.status).toBe(200);
    expect(JSON.stringify(usage.headers)).not.toMatch(/Stellar /);
    const signed = conns.flatMap((c) => heads(c.bytes)).find((h) => /\r\nauthorization: Stellar /i.test(h));
    expect(signed).toBeDefined();
    const auth = /\r\nauthorization: (Stellar [^\r]+)/i.exec(signed as string)?.[1] as string;
    const logs = w.logs();
    expect(logs).not.toContain(auth);
    expect(logs).not.toContain(auth.slice(8, 40));
    for (const h of w.signer()?.produced ?? []) {
      expect(logs).not.toContain(h);
      expect(logs).not.toContain(h.slice(0, 40));
    }
  });
});
