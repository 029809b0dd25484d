import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { startProxyWorld, withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * wallet.prepare_cache (src/wallet/prepare-cache.ts): a payment of a kind already paid is built
 * and signed locally, without asking the Soroban RPC, and the emulator verifies it for real
 * (signature, nonce, expiration, amount, payee). A stale template costs one refused request,
 * never a second payment for it, and the next payment asks the RPC again.
 */
const BASE = "http://test.api.stoka.space";

const store = (w: ProxyWorld, key: string) =>
  curl({
    proxy: w.proxyUrl,
    method: "POST",
    url: `${BASE}/v1/store`,
    headers: { "X-Stoka-Key": key },
    body: Buffer.from("p".repeat(64)),
  });

/** Payer-side RPC calls so far, all methods (the emulator verifies offline; nothing else calls it). */
const rpcCalls = (w: ProxyWorld) => [...w.sandbox.rpc.calls.values()].reduce((a, b) => a + b, 0);

let w: ProxyWorld;
beforeAll(async () => {
  w = await startProxyWorld();
  resetSwitches(w.sandbox, 0);
});
afterAll(async () => {
  await w.close();
});

describe("prepare cache on (the default)", () => {
  it("the first payment asks the RPC, the next ones make no RPC call and are verified and charged", async () => {
    const before = w.charged();
    const first = await store(w, "pc-cold");
    expect(first.status).toBe(201);
    expect(first.headers["x-stoka-proxy-paid"]).toBe("1400");
    const afterCold = rpcCalls(w);
    expect(afterCold).toBeGreaterThanOrEqual(3); // getLatestLedger + 2 × simulateTransaction
    for (let i = 0; i < 3; i += 1) {
      const warm = await store(w, `pc-warm-${i}`);
      expect(warm.status).toBe(201);
      expect(warm.headers["x-stoka-proxy-paid"]).toBe("1400");
    }
    expect(rpcCalls(w)).toBe(afterCold);
    // Four payments, each charged once by the emulator's own verification.
    expect(w.charged() - before).toBe(4n * 1400n);
  });

  it("a stale template: one refused request (paid nothing, signed once), then the next refreshes and pays", async () => {
    await store(w, "pc-stale-warmup"); // a template exists
    // The chain runs far ahead of the template's ledger: a warm expiration is already past.
    w.sandbox.chain.clock.advance(10_000);
    const signer = w.signer();
    if (!signer) throw new Error("no signer");
    const signsBefore = signer.calls;
    const charged = w.charged();
    const calls = rpcCalls(w);
    const refused = await store(w, "pc-stale");
    expect(refused.status).toBe(402);
    expect(refused.headers["x-stoka-proxy-error"]).toBe("payment_rejected");
    expect(signer.calls - signsBefore).toBe(1); // never a second payment for it
    expect(w.charged()).toBe(charged);
    expect(rpcCalls(w)).toBe(calls); // it was the warm (local) build that was refused
    expect(signer.forgotten).toBeGreaterThan(0);

    const next = await store(w, "pc-after-stale");
    expect(next.status).toBe(201);
    expect(rpcCalls(w)).toBeGreaterThan(calls); // cold again: the RPC was asked
    expect(w.charged() - charged).toBe(1400n);
    // And warm again afterwards.
    const calls2 = rpcCalls(w);
    expect((await store(w, "pc-warm-again")).status).toBe(201);
    expect(rpcCalls(w)).toBe(calls2);
  });
});

describe("prepare cache off", () => {
  it("wallet.prepare_cache: false asks the RPC for every payment", async () => {
    await withProxyWorld(
      (c) => {
        c.wallet.prepareCache = false;
      },
      async (off) => {
        resetSwitches(off.sandbox, 0);
        expect((await store(off, "off-1")).status).toBe(201);
        const calls = rpcCalls(off);
        expect((await store(off, "off-2")).status).toBe(201);
        expect(rpcCalls(off) - calls).toBeGreaterThanOrEqual(3);
      },
    );
  });
});
