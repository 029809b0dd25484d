import { Agent, request } from "undici";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Keypair } from "@stellar/stellar-sdk";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { decodeReceipt, send } from "../support/stoka-client.js";
import { directClient, resetSwitches, startTestSandbox } from "../support/sandbox-fixture.js";

/** Every emulator route, success and error paths, paid with the official x402 Stellar client. */
let sb: Sandbox;
beforeAll(async () => {
  sb = await startTestSandbox();
});
afterAll(async () => {
  await sb.close();
});
beforeEach(() => resetSwitches(sb));

const MERGE = { service: "stoka", audience: "agent", api_family: "stoka-x402-v1" };
const bytes42 = Buffer.from("a".repeat(42));

describe("manifest", () => {
  it.each(["/.well-known/stoka.json", "/.well-known/stoka"])("GET %s", async (path) => {
    const res = await send("GET", sb.emulator.httpUrl + path);
    expect(res.status).toBe(200);
    const m = res.json<{ x402: Record<string, unknown>; pricing: Record<string, unknown> }>();
    expect(m).toMatchObject(MERGE);
    expect(m.x402).toMatchObject({ pay_to: sb.payTo, network: "stellar:testnet", fees_sponsored: true });
    expect(m.pricing).toMatchObject({
      decimals: 7,
      store: { base: 1000, per_kib: 100, per_kib_per_day: 10 },
    });
  });

  it("serves HTTPS too, with the sandbox CA", async () => {
    const res = await request(`${sb.emulator.httpsUrl}/.well-known/stoka.json`, {
      dispatcher: new Agent({ connect: { ca: sb.ca.certPem } }),
    });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });
});

describe("store → retrieve → update → delete", () => {
  it("stores 42 bytes for 1400, owned by the payer, with a receipt", async () => {
    const c = directClient(sb);
    const { challenge, paid } = await c.paid("POST", "/v1/store", {
      headers: { "x-stoka-key": "notes/a.txt", "content-type": "application/octet-stream" },
      body: bytes42,
    });
    expect(challenge.json()).toMatchObject({ ...MERGE, x402Version: 2 });
    expect(paid.status).toBe(201);
    expect(paid.json()).toMatchObject({
      ...MERGE,
      key: "notes/a.txt",
      owner_pubkey: c.address,
      size_bytes: 42,
      ttl_seconds: 30 * 86400,
      charged_atomic: "1400",
    });
    const receipt = decodeReceipt(paid.headers["x-payment-response"]);
    expect(receipt).toMatchObject({ success: true, network: "stellar:testnet", payer: c.address });
    expect(receipt.transaction).toMatch(/^[0-9a-f]{64}$/);
    expect(sb.emulator.chargedTotal(c.address)).toBe(1400n);
    expect(sb.chain.balanceOf(c.address)).toBe(100n * 10_000_000n - 1400n);

    // Retrieve: both key spellings, bytes identical, exact quote with X-Stoka-Owner.
    for (const path of ["/v1/retrieve/notes%2Fa.txt", "/v1/retrieve/notes/a.txt"]) {
      const r = await c.paid("GET", path, { headers: { "x-stoka-owner": c.address } });
      expect(r.paid.status).toBe(200);
      expect(r.paid.body.equals(bytes42)).toBe(true);
      expect(r.paid.headers["x-stoka-owner-pubkey"]).toBe(c.address);
      expect(Date.parse(String(r.paid.headers["x-stoka-expires-at"]))).toBeGreaterThan(Date.now());
    }
    expect(sb.emulator.chargedTotal(c.address)).toBe(1400n + 2n * 1100n);

    // Update with a 1-day TTL: 1000 + 1 × (100 + 10) = 1110.
    const u = await c.paid("PUT", "/v1/object/notes%2Fa.txt", {
      headers: { "x-stoka-ttl-seconds": "86400" },
      body: "new",
    });
    expect(u.paid.status).toBe(200);
    expect(u.paid.json()).toMatchObject({ size_bytes: 3, ttl_seconds: 86400, charged_atomic: "1110" });

    // Delete (wallet-signed, free), then retrieve is 404 before any 402.
    const d = await c.signed("DELETE", "/v1/object/notes%2Fa.txt", "delete");
    expect(d.status).toBe(204);
    const gone = await send("GET", `${sb.emulator.httpUrl}/v1/retrieve/notes%2Fa.txt`);
    expect(gone.status).toBe(404);
    expect(gone.json()).toMatchObject({ ...MERGE, error: expect.any(String) });
  });

  it("store without X-Stoka-Key is 400, before any 402", async () => {
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, { body: "x" });
    expect(res.status).toBe(400);
    expect(res.json().error).toMatch(/X-Stoka-Key/);
  });

  it("a bad TTL header is 400", async () => {
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, {
      headers: { "x-stoka-key": "k", "x-stoka-ttl-seconds": "soon" },
      body: "x",
    });
    expect(res.status).toBe(400);
  });

  it("clamps TTL to 90 days and prices 90 days", async () => {
    const c = directClient(sb);
    const { paid } = await c.paid("POST", "/v1/store", {
      headers: { "x-stoka-key": "long", "x-stoka-ttl-seconds": String(400 * 86400) },
      body: bytes42,
    });
    expect(paid.json()).toMatchObject({
      ttl_seconds: 90 * 86400,
      charged_atomic: String(1000 + 100 + 90 * 10),
    });
  });

  it("PUT on a key the payer does not own is 404 and charges nothing", async () => {
    const owner = directClient(sb);
    await owner.paid("POST", "/v1/store", { headers: { "x-stoka-key": "mine" }, body: bytes42 });
    const other = directClient(sb);
    const { paid } = await other.paid("PUT", "/v1/object/mine", { body: "hijack" });
    expect(paid.status).toBe(404);
    expect(sb.emulator.chargedTotal(other.address)).toBe(0n);
    expect(sb.chain.balanceOf(other.address)).toBe(100n * 10_000_000n);
  });

  it("only the owner can retrieve: another payer gets 404, uncharged", async () => {
    const owner = directClient(sb);
    await owner.paid("POST", "/v1/store", { headers: { "x-stoka-key": "private" }, body: bytes42 });
    const other = directClient(sb);
    const { paid } = await other.paid("GET", "/v1/retrieve/private");
    expect(paid.status).toBe(404);
    expect(sb.emulator.chargedTotal(other.address)).toBe(0n);
  });

  it("retrieve of a missing key is 404 before any 402", async () => {
    const res = await send("GET", `${sb.emulator.httpUrl}/v1/retrieve/nothing-here`);
    expect(res.status).toBe(404);
  });

  it("delete is idempotent: 204 for a missing key", async () => {
    const c = directClient(sb);
    expect((await c.signed("DELETE", "/v1/object/never-stored", "delete")).status).toBe(204);
  });

  it("unknown routes are 404 and wrong methods 405, with {error}", async () => {
    expect((await send("GET", `${sb.emulator.httpUrl}/v1/nope`)).status).toBe(404);
    const r = await send("GET", `${sb.emulator.httpUrl}/v1/store`);
    expect(r.status).toBe(405);
    expect(r.json()).toMatchObject({ ...MERGE, error: expect.any(String) });
  });

  it("bodies over the cap are 413", async () => {
    const small = await startTestSandbox({ emulator: { maxBodyBytes: 1024 } });
    try {
      const res = await send("POST", `${small.emulator.httpUrl}/v1/store`, {
        headers: { "x-stoka-key": "k" },
        body: Buffer.alloc(2048),
      });
      expect(res.status).toBe(413);
    } finally {
      await small.close();
    }
  });
});

describe("usage and profile (wallet-signed, free)", () => {
  it("usage reports today's charges of the signer", async () => {
    const c = directClient(sb);
    await c.paid("POST", "/v1/store", { headers: { "x-stoka-key": "u1" }, body: bytes42 });
    await c.paid("POST", "/v1/store", { headers: { "x-stoka-key": "u2" }, body: Buffer.alloc(1025) });
    const res = await c.signed("GET", "/v1/me/usage?days=3", "usage");
    expect(res.status).toBe(200);
    const body = res.json<{
      pubkey: string;
      days: { date: string; spent_atomic: string; requests: number }[];
      total_atomic: string;
    }>();
    expect(body.pubkey).toBe(c.address);
    expect(body.days).toHaveLength(3);
    expect(body.days[0]).toEqual({
      date: new Date().toISOString().slice(0, 10),
      spent_atomic: "3200",
      requests: 2,
    });
    expect(body.total_atomic).toBe("3200");
  });

  it("usage clamps days to 1..90", async () => {
    const c = directClient(sb);
    const many = await c.signed("GET", "/v1/me/usage?days=500", "me-usage");
    expect(many.json<{ days: unknown[] }>().days).toHaveLength(90);
    const none = await c.signed("GET", "/v1/me/usage?days=0", "usage");
    expect(none.json<{ days: unknown[] }>().days).toHaveLength(1);
  });

  it("profile binds an e-mail; a bad e-mail is 400", async () => {
    const c = directClient(sb);
    const ok = await c.signed("POST", "/v1/profile", "profile", {
      body: JSON.stringify({ email: "ops@example.com" }),
    });
    expect(ok.status).toBe(200);
    expect(ok.json()).toMatchObject({ pubkey: c.address, email: "ops@example.com" });
    expect(sb.emulator.state.profiles.get(c.address)).toBe("ops@example.com");
    const bad = await c.signed("POST", "/v1/profile", "profile-bind", {
      body: JSON.stringify({ email: "nope" }),
    });
    expect(bad.status).toBe(400);
  });
});

describe("queues", () => {
  it("push → pop (paid, receipt) → ack; un-acked messages come back", async () => {
    const sender = directClient(sb);
    const receiver = directClient(sb);
    const msg = Buffer.from("hello mailbox");
    const push = await sender.paid("POST", `/v1/queue/${receiver.address}/jobs/push`, { body: msg });
    expect(push.paid.status).toBe(201);
    expect(push.paid.json()).toMatchObject({
      to_pubkey: receiver.address,
      topic: "jobs",
      charged_atomic: "1100",
    });

    const pop = await receiver.paid("POST", "/v1/queue/jobs/pop", {
      headers: { "x-stoka-owner": receiver.address },
    });
    expect(pop.paid.status).toBe(200);
    expect(pop.paid.body.equals(msg)).toBe(true);
    const receipt = String(pop.paid.headers["x-stoka-receipt"]);
    expect(receipt).toMatch(/^[0-9a-f]{32}$/);
    expect(sb.emulator.chargedTotal(receiver.address)).toBe(1100n);

    // Invisible while delivered: the mailbox now looks empty, 204, not charged.
    const empty = await send("POST", `${sb.emulator.httpUrl}/v1/queue/jobs/pop`, {
      headers: { "x-stoka-owner": receiver.address },
    });
    expect(empty.status).toBe(204);

    const wrong = await receiver.signed("POST", "/v1/queue/jobs/ack/0123", "ack");
    expect(wrong.status).toBe(404);
    const ack = await receiver.signed("POST", `/v1/queue/jobs/ack/${receipt}`, "queue-ack");
    expect(ack.status).toBe(204);
    expect(sb.emulator.chargedTotal(receiver.address)).toBe(1100n);
  });

  it("push to something that is not a G-address is 400", async () => {
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/queue/not-a-key/jobs/push`, { body: "x" });
    expect(res.status).toBe(400);
  });

  it("pop long-polls up to the configured window, then 204", async () => {
    sb.emulator.switches.popWaitSeconds = 1;
    const started = Date.now();
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/queue/idle/pop`, {
      headers: { "x-stoka-owner": Keypair.random().publicKey() },
    });
    expect(res.status).toBe(204);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it("a message pushed during the long poll is quoted", async () => {
    sb.emulator.switches.popWaitSeconds = 5;
    const receiver = Keypair.random().publicKey();
    const pending = send("POST", `${sb.emulator.httpUrl}/v1/queue/late/pop`, {
      headers: { "x-stoka-owner": receiver },
    });
    setTimeout(() => sb.emulator.state.push(receiver, "late", "G-sender", Buffer.from("x")), 200);
    const res = await pending;
    expect(res.status).toBe(402);
  });
});
