import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Keypair } from "@stellar/stellar-sdk";
import { CommandMessageSigner, KeyMessageSigner } from "../../src/wallet/message-signer.js";
import { curl } from "../support/clients.js";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { startProxyWorld, withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/** Wallet-signed routes (delete, usage, profile, ack) for apps that cannot sign. */
const ROOT = new URL("../..", import.meta.url).pathname;
const BASE = "http://test.api.stoka.space";
const run = promisify(execFile);

let w: ProxyWorld;
let origin: Origin;
beforeAll(async () => {
  w = await startProxyWorld();
  origin = await startOrigin();
});
afterAll(async () => {
  await origin.close();
  await w.close();
});
beforeEach(() => resetSwitches(w.sandbox, 0));

const challenges = (world: ProxyWorld) => world.sandbox.emulator.state.requests.get("challenge") ?? 0;
const routeHits = (world: ProxyWorld, route: string) => world.sandbox.emulator.state.requests.get(route) ?? 0;

const withWorld = withProxyWorld;

describe("real clients, unmodified", () => {
  it("curl: store, usage, profile, pop + ack, delete", async () => {
    const p = w.proxyUrl;
    expect(
      (
        await curl({
          proxy: p,
          method: "POST",
          url: `${BASE}/v1/store`,
          headers: { "X-Stoka-Key": "c-doc" },
          body: Buffer.from("x".repeat(42)),
        })
      ).status,
    ).toBe(201);
    const wallet = w.sandbox.wallet.publicKey();

    const usage = await curl({ proxy: p, method: "GET", url: `${BASE}/v1/me/usage?days=1` });
    expect(usage.status).toBe(200);
    const today = JSON.parse(usage.body.toString()) as { pubkey: string; days: { spent_atomic: string }[] };
    expect(today.pubkey).toBe(wallet);
    expect(BigInt(today.days[0]?.spent_atomic ?? "0")).toBe(w.charged());

    const profile = await curl({
      proxy: p,
      method: "POST",
      url: `${BASE}/v1/profile`,
      headers: { "Content-Type": "application/json" },
      body: Buffer.from('{"email":"curl@example.com"}'),
    });
    expect(profile.status).toBe(200);
    expect(w.sandbox.emulator.state.profiles.get(wallet)).toBe("curl@example.com");

    expect(
      (
        await curl({
          proxy: p,
          method: "POST",
          url: `${BASE}/v1/queue/${wallet}/c-jobs/push`,
          body: Buffer.from("job"),
        })
      ).status,
    ).toBe(201);
    const pop = await curl({ proxy: p, method: "POST", url: `${BASE}/v1/queue/c-jobs/pop` });
    expect(pop.status).toBe(200);
    const ack = await curl({
      proxy: p,
      method: "POST",
      url: `${BASE}/v1/queue/c-jobs/ack/${pop.headers["x-stoka-receipt"]}`,
    });
    expect(ack.status).toBe(204);

    const del = await curl({ proxy: p, method: "DELETE", url: `${BASE}/v1/object/c-doc` });
    expect(del.status).toBe(204);
    expect(w.sandbox.emulator.state.getBlob(wallet, "c-doc")).toBeUndefined();
    expect(w.logs()).toMatch(/"route":"delete"[^\n]*"wallet_auth":"signed"/);
  });

  it("Python requests: the same, plus usage reporting the charges made earlier in the test", async () => {
    const before = w.charged();
    const { stdout } = await run(
      "python3",
      [join(ROOT, "test/clients/stoka_wallet_auth.py"), BASE, "py-wa", w.sandbox.wallet.publicKey()],
      {
        env: {
          PATH: process.env.PATH ?? "",
          HOME: process.env.HOME ?? "/tmp",
          HTTP_PROXY: w.proxyUrl,
          NO_PROXY: "",
        },
        timeout: 60_000,
      },
    );
    const out = JSON.parse(stdout) as {
      store: number;
      usage: { status: number; body: { days: { spent_atomic: string; requests: number }[] } };
      profile: { status: number; body: { email: string } };
      push: number;
      pop: number;
      ack: number;
      delete: number;
      retrieve_after_delete: number;
    };
    expect(out.store).toBe(201);
    expect(out.usage.status).toBe(200);
    expect(BigInt(out.usage.body.days[0]?.spent_atomic ?? "0")).toBe(before + 1400n);
    expect(out.profile).toMatchObject({ status: 200, body: { email: "py-wa@example.com" } });
    expect([out.push, out.pop, out.ack, out.delete, out.retrieve_after_delete]).toEqual([
      201, 200, 204, 204, 404,
    ]);
  });
});

describe("challenges: fresh each time, one retry, never a loop", () => {
  it("a fresh challenge per request", async () => {
    const before = challenges(w);
    for (let i = 0; i < 3; i++)
      expect((await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/me/usage` })).status).toBe(200);
    expect(challenges(w) - before).toBe(3);
  });

  it("recovers from an expired challenge with exactly one retry", async () => {
    w.sandbox.emulator.addFault({ kind: "stale_challenge" });
    const before = challenges(w);
    const res = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/me/usage` });
    expect(res.status).toBe(200);
    expect(challenges(w) - before).toBe(2);
    expect(w.logs()).toMatch(/"wallet_auth":"signed_after_retry"/);
  });

  it("a wrong audience is rejected by stoka; the proxy tries once more, then hands over the 401", async () => {
    await withWorld(
      (c) => (c.walletAuth = [{ route: "usage", audience: "delete", replaceAuthorization: false }]),
      async (world) => {
        const res = await curl({ proxy: world.proxyUrl, method: "GET", url: `${BASE}/v1/me/usage` });
        expect(res.status).toBe(401);
        expect(JSON.parse(res.body.toString()).error).toMatch(/audience/);
        expect(challenges(world)).toBe(2);
        expect(routeHits(world, "usage")).toBe(2);
      },
    );
  });

  it("an unknown audience spelling falls back to the alternative once", async () => {
    w.sandbox.emulator.switches.audiences = "long";
    const before = challenges(w);
    const res = await curl({ proxy: w.proxyUrl, method: "DELETE", url: `${BASE}/v1/object/whatever` });
    expect(res.status).toBe(204);
    expect(challenges(w) - before).toBe(2);
  });

  it("an Authorization the app set itself is kept (no challenge), unless the route replaces it", async () => {
    const before = challenges(w);
    const own = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: `${BASE}/v1/me/usage`,
      headers: { Authorization: "Bearer app-token" },
    });
    expect(own.status).toBe(401); // stoka refuses the app's own header; the proxy did not touch it
    expect(challenges(w) - before).toBe(0);
    await withWorld(
      (c) => (c.walletAuth = c.walletAuth.map((r) => ({ ...r, replaceAuthorization: true }))),
      async (world) => {
        const replaced = await curl({
          proxy: world.proxyUrl,
          method: "GET",
          url: `${BASE}/v1/me/usage`,
          headers: { Authorization: "Bearer app-token" },
        });
        expect(replaced.status).toBe(200);
      },
    );
  });
});

describe("never toward other hosts", () => {
  it("a non-paid host gets neither Authorization: Stellar nor a challenge request", async () => {
    origin.received.length = 0;
    for (const [method, path] of [
      ["DELETE", "/v1/object/k"],
      ["GET", "/v1/me/usage"],
      ["POST", "/v1/profile"],
      ["POST", "/v1/queue/t/ack/r"],
    ] as const) {
      await curl({ proxy: w.proxyUrl, method, url: `${origin.url}${path}` });
    }
    expect(origin.received).toHaveLength(4);
    for (const r of origin.received) {
      expect(r.headers.authorization).toBeUndefined();
      expect(r.url).not.toMatch(/auth\/challenge/);
    }
  });
});

describe("signing failures: 502 JSON, nothing forwarded", () => {
  it("a key that is not the wallet's", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        const wrong = new KeyMessageSigner(Keypair.random().secret());
        Object.defineProperty(wrong, "address", { value: world.sandbox.wallet.publicKey() });
        world.proxy.ctx.messageSigner = wrong;
        const res = await curl({ proxy: world.proxyUrl, method: "DELETE", url: `${BASE}/v1/object/k` });
        expect(res.status).toBe(502);
        expect(JSON.parse(res.body.toString())).toMatchObject({ code: "sign_failed" });
        expect(routeHits(world, "delete")).toBe(0);
      },
    );
  });

  it("a hanging sign command times out", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        world.proxy.ctx.messageSigner = new CommandMessageSigner(
          "sleep 30",
          400,
          world.sandbox.wallet.publicKey(),
        );
        const started = Date.now();
        const res = await curl({ proxy: world.proxyUrl, method: "DELETE", url: `${BASE}/v1/object/k` });
        expect(Date.now() - started).toBeLessThan(5000);
        expect(res.status).toBe(502);
        expect(JSON.parse(res.body.toString())).toMatchObject({ code: "sign_timeout" });
        expect(routeHits(world, "delete")).toBe(0);
      },
    );
  });

  it("a working sign command (key held outside the proxy)", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        const dir = mkdtempSync(join(tmpdir(), "stoka-msg-"));
        const secretFile = join(dir, "seed");
        writeFileSync(secretFile, world.sandbox.wallet.secret(), { mode: 0o600 });
        const command = `SIGN_SECRET_FILE=${secretFile} node ${join(ROOT, "test/support/sign-message-command.mjs")}`;
        world.proxy.ctx.messageSigner = new CommandMessageSigner(
          command,
          10_000,
          world.sandbox.wallet.publicKey(),
        );
        const res = await curl({ proxy: world.proxyUrl, method: "GET", url: `${BASE}/v1/me/usage` });
        expect(res.status).toBe(200);
      },
    );
  });

  it("no key and no sign command: 502 JSON, nothing forwarded", async () => {
    await withWorld(
      () => undefined,
      async (world) => {
        const res = await curl({ proxy: world.proxyUrl, method: "DELETE", url: `${BASE}/v1/object/k` });
        expect(res.status).toBe(502);
        expect(JSON.parse(res.body.toString())).toMatchObject({ code: "wallet_auth_failed" });
        expect(routeHits(world, "delete")).toBe(0);
      },
      { messageSigner: undefined },
    );
  });

  it("logs never carry the Authorization value or the seed", async () => {
    await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/me/usage` });
    expect(w.logs()).not.toMatch(/Stellar G[A-Z2-7]{55}:/);
    expect(w.logs()).not.toContain(w.sandbox.wallet.secret());
  });
});
