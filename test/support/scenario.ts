import { expect } from "vitest";
import { SCENARIO_PRICES, SCENARIO_TOTAL } from "./clients.js";
import type { StepResult } from "./clients.js";
import type { ProxyWorld } from "./proxy-fixture.js";

/**
 * The common client scenario, checked against the emulator's own record: every paid step paid
 * exactly its quoted price once, bytes identical, the blob deleted with a wallet signature.
 */
export async function expectPaidScenario(
  w: ProxyWorld,
  prefix: string,
  runner: () => Promise<StepResult[]>,
): Promise<void> {
  const chargesBefore = w.sandbox.emulator.state.charges.length;
  const signsBefore = w.signCalls();
  const before = w.charged();
  const results = await runner();
  expect(results.map((r) => [r.step, r.status])).toEqual([
    ["manifest", 200],
    ["store", 201],
    ["retrieve", 200],
    ["update", 200],
    ["push", 201],
    ["pop", 200],
    ["delete", 204],
  ]);
  for (const r of results) {
    expect(r.paid, `${prefix} ${r.step}`).toBe(SCENARIO_PRICES[r.step]);
    if (r.paid) expect(r.tx).toMatch(/^[0-9a-f]{64}$/);
  }
  expect(results.find((r) => r.step === "retrieve")?.body.equals(Buffer.from("a".repeat(42)))).toBe(true);
  expect(results.find((r) => r.step === "pop")?.body.toString()).toBe("hello mailbox");
  // Deleted with a wallet signature: the blob is gone.
  expect(w.sandbox.emulator.state.getBlob(w.sandbox.wallet.publicKey(), `${prefix}-blob`)).toBeUndefined();
  // The emulator's record: exactly these five charges, at exactly these prices.
  const charges = w.sandbox.emulator.state.charges.slice(chargesBefore);
  expect(charges.map((c) => [c.route, c.amount])).toEqual([
    ["store", 1400n],
    ["retrieve", 1100n],
    ["update", 1110n],
    ["queue_push", 1100n],
    ["queue_pop", 1100n],
  ]);
  expect(w.charged() - before).toBe(SCENARIO_TOTAL);
  expect(w.signCalls() - signsBefore).toBe(5);
  // The receipts the app saw are the emulator's transactions.
  expect(results.filter((r) => r.tx).map((r) => r.tx)).toEqual(charges.map((c) => c.tx));
}
