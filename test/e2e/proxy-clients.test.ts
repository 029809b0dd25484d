import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SCENARIO_PRICES,
  SCENARIO_TOTAL,
  runCurl,
  runGo,
  runPython,
  runUndici,
  undiciEnvAgent,
  undiciProxyAgent,
} from "../support/clients.js";
import type { StepResult } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * Unmodified clients through HTTP_PROXY (and gateway mode): every paid step is paid exactly
 * the quoted price, once, and the emulator's own record of charges agrees.
 */
let w: ProxyWorld;
beforeAll(async () => {
  w = await startProxyWorld();
});
afterAll(async () => {
  await w.close();
});

const BASE = "http://test.api.stoka.space";

async function expectScenario(prefix: string, runner: () => Promise<StepResult[]>) {
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
  ]);
  for (const r of results) {
    expect(r.paid, `${prefix} ${r.step}`).toBe(SCENARIO_PRICES[r.step]);
    if (r.paid) expect(r.tx).toMatch(/^[0-9a-f]{64}$/);
  }
  expect(results.find((r) => r.step === "retrieve")?.body.equals(Buffer.from("a".repeat(42)))).toBe(true);
  expect(results.find((r) => r.step === "pop")?.body.toString()).toBe("hello mailbox");
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

const wallet = () => w.sandbox.wallet.publicKey();

describe("forward proxy (HTTP_PROXY) with real clients", () => {
  it("curl -x", async () => {
    await expectScenario("curl", () => runCurl(w.proxyUrl, BASE, "curl", wallet()));
  });

  it("Python requests (HTTP_PROXY)", async () => {
    await expectScenario("py", () => runPython(w.proxyUrl, BASE, "py", wallet()));
  });

  it("Node undici ProxyAgent", async () => {
    await expectScenario("undici", () => runUndici(undiciProxyAgent(w.proxyUrl), BASE, "undici", wallet()));
  });

  it("Node undici EnvHttpProxyAgent", async () => {
    await expectScenario("undici-env", () =>
      runUndici(undiciEnvAgent(w.proxyUrl), BASE, "undici-env", wallet()),
    );
  });

  it("Go net/http (HTTP_PROXY)", async () => {
    await expectScenario("go", () => runGo(w.proxyUrl, BASE, "go", wallet()));
  }, 240_000);

  it("curl through a CONNECT tunnel to port 80 carrying plain HTTP", async () => {
    await expectScenario("tunnel", () =>
      runCurl(w.proxyUrl, `${BASE}:80`, "tunnel", wallet(), ["--proxytunnel"]),
    );
  });
});

describe("gateway mode (origin-form to the configured upstream)", () => {
  it("curl", async () => {
    await expectScenario("gw-curl", () => runCurl(undefined, w.proxyUrl, "gw-curl", wallet()));
  });

  it("Python requests", async () => {
    await expectScenario("gw-py", () => runPython("", w.proxyUrl, "gw-py", wallet()));
  });

  it("Node undici", async () => {
    const { Agent } = await import("undici");
    await expectScenario("gw-undici", () => runUndici(new Agent(), w.proxyUrl, "gw-undici", wallet()));
  });

  it("Go net/http", async () => {
    await expectScenario("gw-go", () => runGo("", w.proxyUrl, "gw-go", wallet()));
  }, 240_000);
});
