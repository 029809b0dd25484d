import net from "node:net";
import type { AddressInfo } from "node:net";
import { Keypair } from "@stellar/stellar-sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { BASE, storeVia, viaProxy } from "../support/resilience-world.js";
import { directClient, resetSwitches } from "../support/sandbox-fixture.js";

/**
 * Attack review of 87038dc (withOwnerQuote sets X-Stoka-Owner on prepared.headers in place
 * instead of on a copy). The proxy's requests to the emulator go through a recording TCP relay:
 * every request head the paid host gets is kept, so where the wallet's address goes (and where
 * it does not) is read off the wire, for the unpaid request, the paid retry, quote-ahead, and
 * the routes that must never carry it.
 */
interface Head {
  method: string;
  path: string;
  lines: [string, string][];
}

/** Splits one connection's client→server bytes into request heads (bodies skipped by length). */
function parseHeads(raw: string): Head[] {
  const heads: Head[] = [];
  let at = 0;
  while (at < raw.length) {
    const end = raw.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const [start = "", ...rest] = raw.slice(at, end).split("\r\n");
    const [method = "", path = ""] = start.split(" ");
    const lines = rest.map((l) => {
      const i = l.indexOf(":");
      return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()] as [string, string];
    });
    heads.push({ method, path, lines });
    const len = Number(lines.find(([k]) => k === "content-length")?.[1] ?? 0);
    at = end + 4 + len;
  }
  return heads;
}

let upstreamBytes: string[] = [];
const relays: net.Server[] = [];
const relayed = new Set<net.Socket>();

async function recordingRelay(targetPort: number): Promise<number> {
  const relay = net.createServer((client) => {
    const i = upstreamBytes.push("") - 1;
    const up = net.connect(targetPort, "127.0.0.1");
    relayed.add(client);
    relayed.add(up);
    client.on("data", (c: Buffer) => {
      upstreamBytes[i] += c.toString("latin1");
      up.write(c);
    });
    up.on("data", (c: Buffer) => client.write(c));
    client.on("close", () => up.destroy());
    up.on("close", () => client.destroy());
    client.on("error", () => undefined);
    up.on("error", () => undefined);
  });
  relays.push(relay);
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", () => r()));
  return (relay.address() as AddressInfo).port;
}

const heads = (): Head[] => upstreamBytes.flatMap(parseHeads);
const owners = (h: Head) => h.lines.filter(([k]) => k === "x-stoka-owner").map(([, v]) => v);
const paid = (h: Head) => h.lines.some(([k]) => k === "x-payment" || k === "payment-signature");

let w: ProxyWorld;
let wallet = "";

beforeAll(async () => {
  w = await startProxyWorld(async (c) => {
    c.resilience.rateLimit = null;
    c.resilience.breaker = null;
    for (const h of c.paidHosts) {
      if (!h.upstream) throw new Error("a paid host without an upstream");
      const port = await recordingRelay(Number(h.upstream.port));
      h.upstream = new URL(`http://127.0.0.1:${port}`);
    }
  });
  wallet = w.proxy.ctx.signer?.address ?? "";
  expect(wallet).toMatch(/^G[A-Z2-7]{55}$/);
});
afterAll(async () => {
  await w?.close();
  for (const s of relayed) s.destroy();
  for (const relay of relays) await new Promise<void>((r) => relay.close(() => r()));
});
beforeEach(() => {
  resetSwitches(w.sandbox, 0);
  upstreamBytes = upstreamBytes.map(() => "");
});

describe("X-Stoka-Owner set in place on the request's own headers", () => {
  it("a retrieve: the unpaid request and the paid retry both name the wallet once; paid once, bytes whole", async () => {
    const body = Buffer.from("o".repeat(3000));
    expect((await storeVia(w, "owner-1", body)).status).toBe(201);
    upstreamBytes = upstreamBytes.map(() => "");
    const signs = w.signCalls();
    const got = await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/retrieve/owner-1`);
    expect(got.status).toBe(200);
    expect(got.body).toBe(body.toString());
    expect(w.signCalls() - signs).toBe(1);
    const r = heads().filter((h) => h.path === "/v1/retrieve/owner-1");
    expect(r).toHaveLength(2);
    expect(r.filter(paid)).toHaveLength(1);
    for (const h of r) expect(owners(h)).toEqual([wallet]);
  });

  it("the app's own X-Stoka-Owner (any case) is kept and the wallet never replaces or joins it", async () => {
    const other = Keypair.random().publicKey();
    const got = await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/retrieve/owner-someone-else`, {
      "X-Stoka-Owner": other,
    });
    expect([402, 404]).toContain(got.status);
    const r = heads().filter((h) => h.path === "/v1/retrieve/owner-someone-else");
    expect(r.length).toBeGreaterThan(0);
    for (const h of r) expect(owners(h)).toEqual([other]);
    expect(upstreamBytes.join("")).not.toContain(wallet);
  });

  it("store, manifest, update, a queue push and an unknown route never carry the wallet as owner", async () => {
    expect((await storeVia(w, "owner-store", Buffer.from("s".repeat(64)))).status).toBe(201);
    await viaProxy(w.proxyUrl, "GET", `${BASE}/.well-known/stoka.json`);
    await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/not-a-route`);
    await viaProxy(
      w.proxyUrl,
      "POST",
      `${BASE}/v1/queue/${Keypair.random().publicKey()}/jobs/push`,
      {},
      Buffer.from("m"),
    );
    // retrieve is GET only: a HEAD or POST to the same path is another route.
    await viaProxy(w.proxyUrl, "POST", `${BASE}/v1/retrieve/owner-store`, {}, Buffer.from("x"));
    const all = heads();
    expect(all.length).toBeGreaterThanOrEqual(5);
    for (const h of all) expect(owners(h)).toEqual([]);
  });

  it("a retrieve then a store on the same kept-alive app connection: the owner does not follow into the store", async () => {
    expect((await storeVia(w, "owner-seq", Buffer.from("q".repeat(100)))).status).toBe(201);
    upstreamBytes = upstreamBytes.map(() => "");
    for (let i = 0; i < 3; i++) {
      expect((await viaProxy(w.proxyUrl, "GET", `${BASE}/v1/retrieve/owner-seq`)).status).toBe(200);
      expect((await storeVia(w, `owner-seq-${i}`, Buffer.from("z".repeat(10)))).status).toBe(201);
    }
    for (const h of heads()) {
      if (h.path.startsWith("/v1/retrieve/")) expect(owners(h)).toEqual([wallet]);
      else expect(owners(h)).toEqual([]);
    }
  });

  it("a queue pop names the wallet's mailbox (unpaid and paid), takes the message once, paid once", async () => {
    const sender = directClient(w.sandbox);
    const push = await sender.paid("POST", `/v1/queue/${wallet}/owner-jobs/push`, {
      body: Buffer.from("mail!"),
    });
    expect(push.paid.status).toBe(201);
    upstreamBytes = upstreamBytes.map(() => "");
    const signs = w.signCalls();
    const pop = await viaProxy(w.proxyUrl, "POST", `${BASE}/v1/queue/owner-jobs/pop`);
    expect(pop.status).toBe(200);
    expect(pop.body).toBe("mail!");
    expect(w.signCalls() - signs).toBe(1);
    const r = heads().filter((h) => h.path === "/v1/queue/owner-jobs/pop");
    expect(r).toHaveLength(2);
    for (const h of r) expect(owners(h)).toEqual([wallet]);
  });

  it("two identical retrieves at once, one with the app naming the wallet itself: each paid at most once, both answered", async () => {
    const body = Buffer.from("c".repeat(500));
    expect((await storeVia(w, "owner-par", body)).status).toBe(201);
    const signs = w.signCalls();
    const charged = w.charged();
    const answers = await Promise.all([
      viaProxy(w.proxyUrl, "GET", `${BASE}/v1/retrieve/owner-par`),
      viaProxy(w.proxyUrl, "GET", `${BASE}/v1/retrieve/owner-par`, { "x-stoka-owner": wallet }),
    ]);
    // In flight at once, the same identity (owner excluded from it, as before the change):
    // the second is a 409, or both pass; never more than one payment each.
    const ok = answers.filter((a) => a.status === 200);
    for (const a of ok) expect(a.body).toBe(body.toString());
    for (const a of answers) expect([200, 409]).toContain(a.status);
    expect(w.signCalls() - signs).toBe(ok.length);
    expect(w.charged() - charged).toBe(BigInt(ok.length) * 1100n);
  });
});

describe("quote-ahead on retrieve with the owner set in place", () => {
  let q: ProxyWorld;
  beforeAll(async () => {
    q = await startProxyWorld((c) => {
      c.resilience.rateLimit = null;
      c.resilience.breaker = null;
      for (const h of c.paidHosts) h.quoteAhead = ["store", "retrieve"];
    });
  });
  afterAll(async () => {
    await q?.close();
  });

  it("a quoted retrieve (one upstream request) is paid once at the exact price and returns the owner's bytes", async () => {
    const seen = () => q.sandbox.emulator.state.requests.get("retrieve") ?? 0;
    expect((await storeVia(q, "qa-owner-t", Buffer.from("t".repeat(10)))).status).toBe(201);
    expect((await viaProxy(q.proxyUrl, "GET", `${BASE}/v1/retrieve/qa-owner-t`)).status).toBe(200);
    const body = Buffer.from("u".repeat(3000));
    expect((await storeVia(q, "qa-owner", body)).status).toBe(201);
    const before = seen();
    const signs = q.signCalls();
    const charged = q.charged();
    const r = await viaProxy(q.proxyUrl, "GET", `${BASE}/v1/retrieve/qa-owner`);
    expect(r.status).toBe(200);
    expect(r.body).toBe(body.toString());
    expect(seen() - before).toBe(1);
    expect(q.signCalls() - signs).toBe(1);
    expect(q.charged() - charged).toBe(1300n);
  });
});
