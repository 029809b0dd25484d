import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keypair } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { StokaProxyError } from "../../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "stoka-config-"));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe("configuration", () => {
  it("safe defaults: loopback, testnet, no budget, no signer", () => {
    const c = loadConfig({});
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 8402 });
    expect(c.adminListen).toEqual({ host: "127.0.0.1", port: 9402 });
    expect(c.network).toBe("stellar:testnet");
    expect(c.paidHosts.map((h) => h.host)).toEqual(["test.api.stoka.space"]);
    expect(c.budgets).toEqual([]);
    expect(c.wallet.secret).toBeUndefined();
  });

  it("admin_listen beyond loopback needs a metrics token or admin.allow_anonymous", () => {
    const refusal = (): string => {
      try {
        loadConfig({ STOKA_PROXY_CONFIG: file("admin-open.yaml", "admin_listen: 0.0.0.0:9402\n") });
      } catch (e) {
        return `${(e as StokaProxyError).message} ${(e as StokaProxyError).hint}`;
      }
      return "started";
    };
    const reason = refusal();
    expect(reason).toMatch(/admin_listen: "0\.0\.0\.0" is reachable from other machines/);
    expect(reason).toMatch(/STOKA_PROXY_METRICS_TOKEN/);
    expect(reason).toMatch(/admin\.allow_anonymous: true/);
    expect(() => loadConfig({}, { adminListen: "[::]:9402" })).toThrow(/--admin-listen/);
    expect(() => loadConfig({ STOKA_PROXY_ADMIN_LISTEN: "10.1.2.3:9402" })).toThrow(
      /STOKA_PROXY_ADMIN_LISTEN/,
    );
    // Allowed: loopback, a token, or the explicit switch.
    expect(loadConfig({}, { adminListen: "[::1]:9402" }).adminListen.host).toBe("::1");
    const token = "t".repeat(32);
    expect(
      loadConfig({ STOKA_PROXY_METRICS_TOKEN: token }, { adminListen: "0.0.0.0:9402" }).metricsToken,
    ).toBe(token);
    const allowed = file(
      "admin-allowed.yaml",
      "admin_listen: 0.0.0.0:9402\nadmin: { allow_anonymous: true }\n",
    );
    expect(loadConfig({ STOKA_PROXY_CONFIG: allowed }).adminListen.host).toBe("0.0.0.0");
  });

  it("STOKA_ENV=prod means pubnet and api.stoka.space; STOKA_BASE_URL overrides", () => {
    const prod = loadConfig({ STOKA_ENV: "prod" });
    expect(prod.network).toBe("stellar:pubnet");
    expect(prod.paidHosts[0]?.host).toBe("api.stoka.space");
    const custom = loadConfig({ STOKA_BASE_URL: "https://stoka.internal:8443" });
    expect(custom.gatewayUpstream.toString()).toBe("https://stoka.internal:8443/");
  });

  it("reads YAML with budgets in USDC or atomic units; flags beat env beat file", () => {
    const p = file(
      "ok.yaml",
      `listen: 127.0.0.1:7000
budgets:
  - name: team
    match: { routes: [store] }
    per_request_max: "0.01 USDC"
    limits: { day: "1 USDC", month: 50000000, rolling: [{ window_seconds: 3600, amount: "0.5 USDC" }] }
`,
    );
    const c = loadConfig({ STOKA_PROXY_LISTEN: "127.0.0.1:7001" }, { config: p, listen: "127.0.0.1:7002" });
    expect(c.listen.port).toBe(7002);
    expect(loadConfig({ STOKA_PROXY_LISTEN: "127.0.0.1:7001" }, { config: p }).listen.port).toBe(7001);
    expect(loadConfig({}, { config: p }).listen.port).toBe(7000);
    expect(c.budgets[0]).toMatchObject({ name: "team", perRequestMax: 100_000n });
    expect(c.budgets[0]?.limits.map((l) => l.amount)).toEqual([10_000_000n, 50_000_000n, 5_000_000n]);
  });

  it("config/example.yaml is valid and matches the defaults for wallet auth", () => {
    const c = loadConfig({}, { config: new URL("../../config/example.yaml", import.meta.url).pathname });
    expect(c.budgets.map((b) => b.name)).toEqual(["default"]);
    expect(c.walletAuth).toEqual(loadConfig({}).walletAuth);
  });

  it("reads the seed from a secret file (a mounted Kubernetes secret)", () => {
    const seed = Keypair.random().secret();
    const secret = file("seed", `${seed}\n`);
    expect(loadConfig({ STELLAR_SECRET_FILE: secret }).wallet.secret).toBe(seed);
  });

  it("paid hosts are authorities: name (any port) or name:port, IPv6 in brackets, normalised", () => {
    const p = file(
      "hosts.yaml",
      `paid_hosts:
  - host: Stoka.Internal.
  - host: stoka.internal:8443
    upstream: https://backend.internal:9443
  - host: "[::1]:8443"
`,
    );
    const c = loadConfig({}, { config: p });
    expect(c.paidHosts.map((h) => [h.host, h.port, h.upstream?.href])).toEqual([
      ["stoka.internal", undefined, undefined],
      ["stoka.internal", 8443, "https://backend.internal:9443/"],
      ["::1", 8443, undefined],
    ]);
    // The default paid host is stoka's own, any port, at the base URL.
    const d = loadConfig({ STOKA_BASE_URL: "https://stoka.internal:8443" }).paidHosts;
    expect(d.map((h) => [h.host, h.port, h.upstream?.href])).toEqual([
      ["stoka.internal", undefined, "https://stoka.internal:8443/"],
    ]);
  });

  it("quote_ahead is off unless listed per paid host; routes once each; other routes refused", () => {
    const p = file(
      "quote.yaml",
      `paid_hosts:
  - host: a.internal
    quote_ahead: [store, retrieve, store]
  - host: b.internal
`,
    );
    expect(loadConfig({}, { config: p }).paidHosts.map((h) => h.quoteAhead)).toEqual([
      ["store", "retrieve"],
      undefined,
    ]);
    const bad = file("quote-bad.yaml", "paid_hosts: [{ host: a.internal, quote_ahead: [delete] }]\n");
    expect(() => loadConfig({}, { config: bad })).toThrow(/quote_ahead/);
  });

  it.each([
    ["an empty paid host", "paid_hosts: [{ host: '' }]\n", /paid_hosts\.0\.host: the host is empty/],
    ["a URL as paid host", "paid_hosts: [{ host: 'https://x' }]\n", /paid_hosts\.0\.host: .*is a URL/],
    ["a paid host with a path", "paid_hosts: [{ host: ok }, { host: x/y }]\n", /paid_hosts\.1\.host: .*path/],
    [
      "a paid host port out of range",
      "paid_hosts: [{ host: 'x:0' }]\n",
      /paid_hosts\.0\.host: .*out of range/,
    ],
    [
      "a duplicate paid host",
      "paid_hosts: [{ host: X. }, { host: x }]\n",
      /paid_hosts\.1\.host: .*duplicate/,
    ],
    ["a bare IPv6 paid host", "paid_hosts: [{ host: '::1' }]\n", /paid_hosts\.0\.host: .*brackets/],
    [
      "a paid upstream with a path",
      "paid_hosts: [{ host: x, upstream: 'https://x/api' }]\n",
      /paid_hosts\.0\.upstream: .*no path/,
    ],
    ["an unknown field", "lisen: 127.0.0.1:1\n", /lisen/],
    ["a bad listen address", "listen: localhost\n", /listen: expected host:port/],
    ["a bad amount", "budgets: [{ name: b, limits: { day: '1.5' } }]\n", /budgets\.0\.limits\.day/],
    ["a budget without limits", "budgets: [{ name: b }]\n", /budgets\.0\.limits/],
    ["a bad budget name", "budgets: [{ name: 'a b', limits: { day: 1 } }]\n", /budgets\.0\.name/],
    ["a bad payee", "paid_hosts: [{ host: h, pay_to: [nope] }]\n", /paid_hosts\.0\.pay_to\.0/],
    [
      "a Redis budget limit above 2^53 - 1 (Lua numbers)",
      "budget_store: { kind: redis }\nbudgets: [{ name: a, limits: { day: 1 } }, { name: b, limits: { day: 1, rolling: [{ window_seconds: 60, amount: 1 }, { window_seconds: 90, amount: '9007199254740992' }] } }]\n",
      /budgets\.1\.limits\.rolling\.1\.amount: 9007199254740992 atomic units is more than the Redis budget store counts exactly/,
    ],
    [
      "a Redis budget calendar limit above 2^53 - 1",
      "budget_store: { kind: redis }\nbudgets: [{ name: a, limits: { month: '900719926 USDC' } }]\n",
      /budgets\.0\.limits\.month/,
    ],
  ])("names the file and field for %s", (_name, yaml, field) => {
    const p = file(`bad-${Math.random()}.yaml`, yaml);
    try {
      loadConfig({}, { config: p });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(StokaProxyError);
      expect((e as StokaProxyError).code).toBe("config_invalid");
      expect((e as Error).message).toContain(p);
      expect((e as Error).message).toMatch(field);
    }
  });

  it("the Redis store takes limits up to 2^53 - 1 atomic units; SQLite takes more", () => {
    const yaml = (store: string, amount: string) =>
      file(
        `big-${Math.random()}.yaml`,
        `budget_store: { kind: ${store} }\nbudgets: [{ name: a, limits: { day: '${amount}' } }]\n`,
      );
    expect(loadConfig({}, { config: yaml("redis", "9007199254740991") }).budgets[0]?.limits[0]?.amount).toBe(
      9007199254740991n,
    );
    expect(loadConfig({}, { config: yaml("sqlite", "9007199254740992") }).budgets[0]?.limits[0]?.amount).toBe(
      9007199254740992n,
    );
    // Redis chosen by the environment alone is checked too.
    const noStore = file(
      `big-env-${Math.random()}.yaml`,
      "budgets: [{ name: a, limits: { day: '9007199254740992' } }]\n",
    );
    expect(() => loadConfig({ STOKA_PROXY_REDIS_URL: "redis://127.0.0.1:1" }, { config: noStore })).toThrow(
      /budgets\.0\.limits\.day/,
    );
    expect(loadConfig({}, { config: noStore }).budgetStore.kind).toBe("sqlite");
  });
});
