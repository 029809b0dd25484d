import { afterAll, beforeAll, describe, it } from "vitest";
import {
  runCurl,
  runGo,
  runPython,
  runUndici,
  undiciEnvAgent,
  undiciProxyAgent,
} from "../support/clients.js";
import type { StepResult } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import { expectPaidScenario } from "../support/scenario.js";
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

const expectScenario = (prefix: string, runner: () => Promise<StepResult[]>) =>
  expectPaidScenario(w, prefix, runner);

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
