import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { RELOAD_FIELDS, planReload } from "../../src/config/reload-plan.js";
import { StokaProxyError } from "../../src/errors.js";

/** What a reload applies and what it keeps until a restart (docs/operations.md, Reloading). */
const dir = mkdtempSync(join(tmpdir(), "stoka-reload-plan-"));
let n = 0;
function config(yaml: string, env: NodeJS.ProcessEnv = {}) {
  const path = join(dir, `c${n++}.yaml`);
  writeFileSync(path, yaml);
  return loadConfig(env, { config: path });
}
const BASE = 'budgets: [{ name: day, limits: { day: "1 USDC" } }]\n';

describe("planReload", () => {
  it.each([
    ["nothing changed", "", [], []],
    ["a budget's limit", 'budgets: [{ name: day, limits: { day: "0.5 USDC" } }]\n', ["budgets"], []],
    ["client tokens", `${BASE}clients: [{ name: a, token_sha256: "${"a".repeat(64)}" }]\n`, ["clients"], []],
    ["paid hosts", `${BASE}paid_hosts: [{ host: "stoka.example" }]\n`, ["paid_hosts"], []],
    ["egress", `${BASE}egress: { deny_hosts: ["evil.example"] }\n`, ["egress"], []],
    ["the drain time", `${BASE}shutdown: { drain_seconds: 5 }\n`, ["shutdown.drain_seconds"], []],
    ["the listener", `${BASE}listen: "127.0.0.1:9999"\n`, [], ["listen"]],
    ["the admin listener", `${BASE}admin_listen: "127.0.0.1:9998"\n`, [], ["admin_listen"]],
    ["the data dir", `${BASE}data_dir: /tmp/elsewhere\n`, [], ["data_dir"]],
    ["the store kind", `${BASE}budget_store: { kind: redis }\n`, [], ["budget_store"]],
    ["the wallet", `${BASE}wallet: { rpc_url: "https://rpc.example" }\n`, [], ["wallet"]],
    ["resilience", `${BASE}resilience: { circuit_breaker: { failure_threshold: 9 } }\n`, [], ["resilience"]],
    [
      "the start-up kill switch",
      `${BASE}payments: { stopped: true }\n`,
      [],
      [
        "payments (start-up kill switch and dry run; flip them now with POST /payments/stop, /payments/resume, /payments/dry-run)",
      ],
    ],
    [
      "both kinds at once",
      `budgets: [{ name: day, limits: { day: "2 USDC" } }]\nlisten: "127.0.0.1:9999"\n`,
      ["budgets"],
      ["listen"],
    ],
  ] as const)("%s", (_name, yaml, applied, needsRestart) => {
    const current = config(BASE);
    const next = config(yaml === "" ? BASE : yaml);
    const plan = planReload(current, next);
    expect(plan.applied).toEqual(applied);
    expect(plan.needsRestart).toEqual(needsRestart);
    // Restart-only fields keep their old value; live ones take the new.
    expect(plan.config.listen).toEqual(current.listen);
    expect(plan.config.dataDir).toBe(current.dataDir);
    expect(plan.config.budgetStore).toEqual(current.budgetStore);
    expect(plan.config.wallet).toEqual(current.wallet);
    expect(plan.config.budgets).toEqual(next.budgets);
    expect(plan.config.clients).toEqual(next.clients);
    expect(plan.config.egress).toEqual(next.egress);
  });

  it("names every field a config can have: none is reported by its internal key", () => {
    const keys = Object.keys(config(BASE));
    expect(keys.filter((k) => !RELOAD_FIELDS.includes(k))).toEqual([]);
  });

  it("never puts a secret in what it reports: fields are named, values are not", () => {
    const current = config(BASE, { STELLAR_SECRET: "", STOKA_PROXY_ADMIN_TOKEN: "first-admin-token-0123" });
    const next = config(BASE, { STOKA_PROXY_ADMIN_TOKEN: "second-admin-token-0123" });
    const plan = planReload(current, next);
    expect(plan.needsRestart).toEqual(["admin token (admin.token_file / STOKA_PROXY_ADMIN_TOKEN)"]);
    expect(JSON.stringify([plan.applied, plan.needsRestart])).not.toMatch(/admin-token-0123/);
    expect(plan.config.adminToken).toBe("first-admin-token-0123");
  });
});

describe("shutdown and admin settings", () => {
  it("drain_seconds defaults to 20 and takes fractions", () => {
    expect(config("").shutdown.drainMs).toBe(20_000);
    expect(config("shutdown: { drain_seconds: 1.5 }\n").shutdown.drainMs).toBe(1500);
    expect(() => config("shutdown: { drain_seconds: -1 }\n")).toThrow(StokaProxyError);
  });

  it("the admin token comes from the env or admin.token_file, and a short one is refused", () => {
    const file = join(dir, "admin-token");
    writeFileSync(file, "token-from-the-file-0123456789\n");
    expect(config(`admin: { token_file: ${file} }\n`).adminToken).toBe("token-from-the-file-0123456789");
    expect(
      config(`admin: { token_file: ${file} }\n`, { STOKA_PROXY_ADMIN_TOKEN: "token-from-the-env-0123" })
        .adminToken,
    ).toBe("token-from-the-env-0123");
    expect(config("").adminToken).toBeUndefined();
    let err: unknown;
    try {
      config("", { STOKA_PROXY_ADMIN_TOKEN: "short" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StokaProxyError);
    expect((err as Error).message).toMatch(/STOKA_PROXY_ADMIN_TOKEN: the admin token must be at least 16/);
    expect((err as Error).message).not.toContain("short");
  });
});
