import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import net from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { Keypair } from "@stellar/stellar-sdk";
import type { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * Security events from a real proxy: a 402 refused for its payee, 407s (forward and CONNECT),
 * a 401 in gateway mode, egress denials (forward and CONNECT) each become one stored event with
 * its stable code and the metric; a flood of 407s is counted in full but stored only up to the
 * per-code rate, without slowing the answers; `stoka-proxy events` (the real CLI, a child
 * process) lists them from the proxy's database file, filtered by code and time, as JSON.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);
const TOKEN = "client-token-for-security-events-0123";

let w: ProxyWorld;
const port = () => Number(new URL(w.proxyUrl).port);

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x))
    .reduce((a, v) => a + v.value, 0);
}

/** Sends raw bytes and resolves with the status line's code of the answer. */
function rawStatus(bytes: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port(), "127.0.0.1", () => s.write(bytes));
    let got = "";
    s.setTimeout(10_000, () => s.destroy(new Error("timeout")));
    s.on("data", (c: Buffer) => {
      got += c.toString("latin1");
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        resolve(Number(m[1]));
        s.destroy();
      }
    });
    s.on("error", reject);
  });
}

const auth = { "Proxy-Authorization": `Bearer ${TOKEN}` };

beforeAll(async () => {
  w = await startProxyWorld((c, sandbox) => {
    c.clients = [{ name: "app-a", tokenSha256: createHash("sha256").update(TOKEN).digest("hex") }];
    c.egress.denyHosts = ["blocked.example"];
    c.paidHosts.push({
      host: "untrusted.example",
      upstream: new URL(sandbox.emulator.httpUrl),
      payTo: [Keypair.random().publicKey()],
    });
  });
}, 60_000);

afterAll(async () => {
  await w?.close();
});

describe("security events", () => {
  it("stores one event per refusal with its stable code, and counts it", async () => {
    const refused = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: "http://untrusted.example/v1/store",
      headers: { ...auth, "X-Stoka-Key": "k" },
      body: Buffer.from("x".repeat(42)),
    });
    expect(refused.headers["x-stoka-proxy-error"]).toBe("terms_rejected");
    const noToken = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: "http://test.api.stoka.space/v1/retrieve/k",
    });
    expect(noToken.status).toBe(407);
    expect(
      await rawStatus("CONNECT test.api.stoka.space:443 HTTP/1.1\r\nHost: test.api.stoka.space:443\r\n\r\n"),
    ).toBe(407);
    const gateway = await curl({ method: "GET", url: `${w.proxyUrl}/v1/retrieve/k` });
    expect(gateway.status).toBe(401);
    const denied = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: "http://blocked.example/",
      headers: auth,
    });
    expect(denied.headers["x-stoka-proxy-error"]).toBe("egress_denied");
    expect(
      await rawStatus(
        `CONNECT blocked.example:443 HTTP/1.1\r\nHost: blocked.example:443\r\nProxy-Authorization: Bearer ${TOKEN}\r\n\r\n`,
      ),
    ).toBe(403);

    await w.proxy.operator.events.settle();
    const stored = await w.proxy.operator.store.list();
    expect(stored.map((e) => [e.code, e.client, e.host, e.route])).toEqual([
      ["terms_rejected", "app-a", "untrusted.example", "store"],
      ["proxy_auth_required", expect.any(String), "test.api.stoka.space", expect.any(String)],
      ["proxy_auth_required", "", "test.api.stoka.space:443", "connect"],
      ["client_auth_required", expect.any(String), "", expect.any(String)],
      ["egress_denied", "app-a", "blocked.example", "other"],
      ["egress_denied", "app-a", "blocked.example:443", "connect"],
    ]);
    expect(stored[0]?.detail).toMatch(/payee G[A-Z0-9]{55} is not an allowed payTo/);
    for (const e of stored) expect(e.detail).not.toContain(TOKEN);
    const reg = w.proxy.registry;
    expect(await counter(reg, "stoka_proxy_security_events_total", { code: "proxy_auth_required" })).toBe(2);
    expect(await counter(reg, "stoka_proxy_security_events_total", { code: "egress_denied" })).toBe(2);
    expect(await counter(reg, "stoka_proxy_security_events_total", { code: "terms_rejected" })).toBe(1);
    expect(await counter(reg, "stoka_proxy_security_events_total", { code: "client_auth_required" })).toBe(1);
  }, 60_000);

  it("a flood of 407s is counted in full, stored only up to the per-code rate", async () => {
    const reg = w.proxy.registry;
    const before = await counter(reg, "stoka_proxy_security_events_total", { code: "proxy_auth_required" });
    const storedBefore = (await w.proxy.operator.store.list({ code: "proxy_auth_required" })).length;
    const started = Date.now();
    const N = 300;
    const statuses: number[] = [];
    for (let batch = 0; batch < N / 50; batch++) {
      statuses.push(
        ...(await Promise.all(
          Array.from({ length: 50 }, () =>
            rawStatus(
              "GET http://test.api.stoka.space/v1/retrieve/x HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n",
            ),
          ),
        )),
      );
    }
    const seconds = Math.ceil((Date.now() - started) / 1000) + 1;
    expect(statuses.every((s) => s === 407)).toBe(true);
    await w.proxy.operator.events.settle();
    expect(await counter(reg, "stoka_proxy_security_events_total", { code: "proxy_auth_required" })).toBe(
      before + N,
    );
    const stored =
      (await w.proxy.operator.store.list({ code: "proxy_auth_required", limit: 10_000 })).length -
      storedBefore;
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThanOrEqual(20 * seconds);
    expect(await counter(reg, "stoka_proxy_security_events_dropped_total", { reason: "rate_limited" })).toBe(
      N - stored,
    );
  }, 60_000);

  it("stoka-proxy events lists them from the database file, by code and time, as JSON", async () => {
    const env = { ...process.env, STOKA_PROXY_DATA_DIR: w.config.dataDir, STOKA_PROXY_LOG_LEVEL: "silent" };
    const cli = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
    const json = await run(process.execPath, [...cli, "events", "--json", "--code", "egress_denied"], {
      cwd: ROOT,
      env,
    });
    const listed = JSON.parse(json.stdout) as { code: string; host: string; at: string }[];
    expect(listed.map((e) => [e.code, e.host])).toEqual([
      ["egress_denied", "blocked.example"],
      ["egress_denied", "blocked.example:443"],
    ]);
    const later = await run(
      process.execPath,
      [...cli, "events", "--since", new Date(Date.now() + 60_000).toISOString()],
      { cwd: ROOT, env },
    );
    expect(later.stdout).toBe("no security events stored\n");
    const text = await run(process.execPath, [...cli, "events", "--code", "terms_rejected"], {
      cwd: ROOT,
      env,
    });
    expect(text.stdout).toMatch(
      /^\d{4}-\d\d-\d\dT[^ ]+Z {2}terms_rejected +app-a {2}untrusted\.example {2}store {2}/,
    );
    const bad = await run(process.execPath, [...cli, "events", "--code", "nope"], { cwd: ROOT, env }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect("code" in bad && bad.code).toBe(2);
  }, 60_000);
});
