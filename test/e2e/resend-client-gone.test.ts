import { afterAll, beforeAll, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { BASE, chargesSince, viaProxy } from "../support/resilience-world.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * A 429 to the paid retry makes the proxy wait and resend the same header. An app that left
 * during that wait must not have the payment resent (and charged) for an answer nobody reads.
 */
let w: ProxyWorld;
beforeAll(async () => {
  w = await startProxyWorld((c) => {
    c.resilience.resend = {
      maxResends: 2,
      safetyMarginMs: 1000,
      retryAfterCapMs: 3000,
      baseDelayMs: 50,
      maxDelayMs: 200,
    };
    c.resilience.breaker = null;
  });
});
afterAll(async () => {
  await w.close();
});

it("does not resend a paid retry after the app left during the 429 wait", async () => {
  resetSwitches(w.sandbox, 0);
  w.sandbox.emulator.addFault({ remaining: 1, kind: "rate_limited", stage: "paid", retryAfterSeconds: 2 });
  const charges = w.sandbox.emulator.state.charges.length;
  const gone = viaProxy(
    w.proxyUrl,
    "POST",
    `${BASE}/v1/store`,
    { "x-stoka-key": "gone-during-wait" },
    Buffer.from("r".repeat(42)),
    800,
  ).catch((e: Error) => e.message);
  expect(await gone).toBe("client timeout");
  // Past the Retry-After wait and any resend it would have made.
  await new Promise((r) => setTimeout(r, 4000));
  expect(chargesSince(w, charges)).toBe(0);
}, 60_000);
