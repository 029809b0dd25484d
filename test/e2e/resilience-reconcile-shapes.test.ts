import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StokaProxyError } from "../../src/errors.js";
import { reconcile } from "../../src/payment/reconciler.js";
import type { UsageShape } from "../../src/sandbox/switches.js";
import { reconcileDeps, startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { storeVia } from "../support/resilience-world.js";

/**
 * Reconcile against the wallet's usage answer in each shape stoka has been seen to send (the
 * emulator's usageShape switch): the same numbers read from every one; an answer with no
 * days fails with a message naming what it got, never a TypeError.
 */
const PRICE = 1400n;
let w: ProxyWorld;
beforeAll(async () => {
  w = await startProxyWorld();
  for (const k of ["shape-1", "shape-2"]) expect((await storeVia(w, k)).status).toBe(201);
});
afterAll(async () => {
  await w.close();
});

describe("reconcile reads every usage shape", () => {
  it.each(["days", "series", "map", "pairs", "nested", "payments"] as UsageShape[])("%s", async (shape) => {
    w.sandbox.emulator.switches.usageShape = shape;
    const report = await reconcile(reconcileDeps(w), 1, false);
    expect(report[0]).toMatchObject({ status: "match", upstream: 2n * PRICE, difference: 0n });
  });

  it("the live API's {days: 7, series: [...]} (the answer that crashed reconcile)", async () => {
    w.sandbox.emulator.switches.usageShape = "series";
    const report = await reconcile(reconcileDeps(w), 7, false);
    expect(report).toHaveLength(7);
    expect(report[0]?.upstream).toBe(2n * PRICE);
  });

  it("per payment where the answer lists them: a charged indeterminate payment is found by its transaction", async () => {
    w.sandbox.emulator.addFault({ kind: "error_after_settle" });
    const res = await storeVia(w, "shape-indeterminate");
    expect(res.status).toBe(502);
    const id = JSON.parse(res.body).payment_id as string;
    w.sandbox.emulator.switches.usageShape = "payments";
    await reconcile(reconcileDeps(w), 1, true);
    const row = w.proxy.stores.ledger.latest().find((r) => r.paymentId === id);
    expect(row?.state).toBe("settled");
    expect(row?.reason).toMatch(/reconciled: its transaction is listed in the usage/);
    const report = await reconcile(reconcileDeps(w), 1, false);
    expect(report[0]).toMatchObject({ status: "match", upstream: 3n * PRICE });
  });

  it("an answer without days fails naming what it got", async () => {
    w.sandbox.emulator.switches.usageShape = "garbage";
    const err = await reconcile(reconcileDeps(w), 1, false).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StokaProxyError);
    expect((err as StokaProxyError).code).toBe("usage_unreadable");
    expect((err as StokaProxyError).message).toMatch(
      /no list of days found; got an object with keys: .*total \(string\)/,
    );
    w.sandbox.emulator.switches.usageShape = "days";
  });
});
