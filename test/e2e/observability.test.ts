import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { AdminServer } from "../../src/observability/admin.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { freePort, privateRedis } from "../support/redis-server.js";
import { requireTool } from "../support/tools.js";

/**
 * Metrics equal the ledger's and the emulator's counts after a scripted run; a real Prometheus
 * scrapes the proxy and every PromQL expression of the Grafana dashboard returns data.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const BASE = "http://test.api.stoka.space";
const BODY = Buffer.from("m".repeat(42));

/** Parses Prometheus text exposition into (name{labels} → value). */
function parseMetrics(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

function sum(
  metrics: ReturnType<typeof parseMetrics>,
  name: string,
  where: Record<string, string> = {},
): number {
  return metrics
    .filter((m) => m.name === name && Object.entries(where).every(([k, v]) => m.labels[k] === v))
    .reduce((s, m) => s + m.value, 0);
}

let w: ProxyWorld;
let admin: AdminServer;
beforeAll(async () => {
  w = await startProxyWorld();
  admin = new AdminServer({ host: "127.0.0.1", port: 0 }, w.proxy.registry, () => w.proxy.readiness());
  await admin.listen();
  // The scripted run: N stores, M retrieves, one refusal, one rejected payment, and one each of
  // the rarer paths so every dashboard panel has data.
  const store = (key: string, body = BODY) =>
    curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": key },
      body,
    });
  for (let i = 0; i < 4; i++) expect((await store(`s${i}`)).status).toBe(201);
  for (let i = 0; i < 3; i++)
    expect((await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/retrieve/s${i}` })).status).toBe(
      200,
    );
  expect((await store("big", Buffer.alloc(2 * 1024 * 1024))).headers["x-stoka-proxy-error"]).toBe(
    "price_above_cap",
  );
  w.sandbox.emulator.addFault({ kind: "settle_fails" });
  expect((await store("rejected")).headers["x-stoka-proxy-error"]).toBe("payment_rejected");
  w.sandbox.emulator.addFault({ kind: "omit_receipt" });
  expect((await store("noreceipt")).status).toBe(201);
  w.sandbox.emulator.addFault({ kind: "error_after_settle" });
  expect((await store("unknown")).status).toBe(502);
  expect((await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/me/usage` })).status).toBe(200);
  expect(
    (
      await curl({
        proxy: w.proxyUrl,
        method: "GET",
        url: `${BASE}:80/.well-known/stoka.json`,
        extra: ["--proxytunnel"],
      })
    ).status,
  ).toBe(200);
  expect(
    (await curl({ proxy: w.proxyUrl, method: "GET", url: "http://localhost:9/unreachable" })).status,
  ).toBe(502);
}, 60_000);
afterAll(async () => {
  await admin.close();
  await w.close();
});

const scrape = async () => parseMetrics(await (await fetch(`${admin.url}/metrics`)).text());

describe("metric values after a scripted run", () => {
  it("equal the ledger's and the emulator's counts exactly", async () => {
    const m = await scrape();
    const ledger = w.proxy.stores.ledger.latest();
    const count = (state: string) => ledger.filter((r) => r.state === state).length;
    const settled = ledger.filter((r) => r.state === "settled");
    // 4 stores + 3 retrieves + 1 without receipt settled; 1 rejected; 1 refused; 1 indeterminate.
    expect(sum(m, "stoka_proxy_payments_total", { outcome: "settled" })).toBe(8);
    expect(count("settled")).toBe(8);
    expect(sum(m, "stoka_proxy_payments_total", { outcome: "rejected" })).toBe(count("rejected"));
    expect(sum(m, "stoka_proxy_payments_total", { outcome: "rejected" })).toBe(1);
    expect(sum(m, "stoka_proxy_payments_total", { outcome: "refused" })).toBe(1);
    expect(sum(m, "stoka_proxy_payments_total", { outcome: "indeterminate" })).toBe(count("indeterminate"));
    expect(sum(m, "stoka_proxy_indeterminate_payments")).toBe(1);
    const spent = settled.reduce((s, r) => s + r.amount, 0n);
    expect(BigInt(sum(m, "stoka_proxy_spent_atomic_total"))).toBe(spent);
    // The emulator charged the settled ones and the indeterminate one (5xx after settling).
    const indeterminate = ledger
      .filter((r) => r.state === "indeterminate")
      .reduce((s, r) => s + r.amount, 0n);
    expect(w.charged()).toBe(spent + indeterminate);
    expect(w.sandbox.emulator.state.charges).toHaveLength(9);
    expect(sum(m, "stoka_proxy_spent_atomic_total", { route: "store" })).toBe(5 * 1400);
    expect(sum(m, "stoka_proxy_spent_atomic_total", { route: "retrieve" })).toBe(3 * 1100);
    expect(sum(m, "stoka_proxy_paid_without_receipt_total")).toBe(1);
    expect(sum(m, "stoka_proxy_requests_total", { route: "retrieve", code: "200" })).toBe(3);
    expect(sum(m, "stoka_proxy_requests_total", { route: "store", code: "201" })).toBe(5);
    expect(sum(m, "stoka_proxy_payment_signing_seconds_count")).toBe(w.signCalls());
    expect(sum(m, "stoka_proxy_wallet_auth_total", { route: "usage", outcome: "signed" })).toBe(1);
    expect(sum(m, "stoka_proxy_tunnels_total", { kind: "http" })).toBe(1);
    expect(sum(m, "stoka_proxy_upstream_errors_total", { kind: "connect" })).toBe(1);
    expect(sum(m, "stoka_proxy_upstream_errors_total", { kind: "status_5xx" })).toBe(1);
  });

  it("budget gauges reflect the store", async () => {
    const m = await scrape();
    const b = w.config.budgets[0] as Budget;
    const used = await w.proxy.stores.budgets.used(b, b.limits[0] as Budget["limits"][0], Date.now());
    expect(sum(m, "stoka_proxy_budget_spent_atomic", { budget: "sandbox", period: "day" })).toBe(
      Number(used),
    );
    expect(sum(m, "stoka_proxy_budget_limit_atomic", { budget: "sandbox", period: "day" })).toBe(10_000_000);
    expect(sum(m, "stoka_proxy_budget_reserved_atomic", { budget: "sandbox" })).toBe(0);
  });

  it("labels are bounded: no URL, key or address in any label", async () => {
    for (const metric of await scrape()) {
      for (const v of Object.values(metric.labels)) {
        expect(v).not.toMatch(/\/|G[A-Z2-7]{55}|stoka\.space/);
      }
    }
  });
});

describe("a real Prometheus scrapes the proxy; every dashboard query returns data", () => {
  let prom: ChildProcess | undefined;
  let promUrl = "";
  afterAll(() => {
    prom?.kill("SIGTERM");
  });

  it("evaluates each PromQL expression of grafana/dashboards/stoka-proxy.json", async () => {
    requireTool("prometheus");
    const dir = mkdtempSync(join(tmpdir(), "stoka-prom-"));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    writeFileSync(
      join(dir, "prometheus.yml"),
      `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: stoka-proxy\n    static_configs: [{ targets: ["${new URL(admin.url).host}"] }]\n`,
    );
    prom = spawn(
      "prometheus",
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      {
        stdio: "ignore",
      },
    );
    let spawnError: Error | undefined;
    prom.once("error", (e) => {
      spawnError = e;
    });
    const query = async (q: string) => {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
      return (await res.json()) as { status: string; data?: { result: unknown[] }; error?: string };
    };
    // Wait until several scrapes happened (rates need two samples), with more traffic between.
    const deadline = Date.now() + 60_000;
    let samples = 0;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`prometheus did not start: ${spawnError.message}`);
      const r = await query("count_over_time(stoka_proxy_requests_total[1m])").catch(() => undefined);
      const first = r?.data?.result[0] as { value?: [number, string] } | undefined;
      samples = Number(first?.value?.[1] ?? 0);
      if (samples >= 4) break;
      await curl({
        proxy: w.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": `tick-${Date.now()}` },
        body: BODY,
      });
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(samples).toBeGreaterThanOrEqual(4);

    const dashboard = JSON.parse(readFileSync(join(ROOT, "grafana/dashboards/stoka-proxy.json"), "utf8")) as {
      panels: { title: string; targets: { expr: string }[] }[];
      templating: { list: { name: string; type: string }[] };
    };
    expect(dashboard.templating.list.find((v) => v.name === "datasource")?.type).toBe("datasource");
    const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => ({ title: p.title, expr: t.expr })));
    expect(exprs.length).toBeGreaterThanOrEqual(15);
    for (const { title, expr } of exprs) {
      const q = expr
        .replaceAll("$__rate_interval", "1m")
        .replaceAll("$__range", "5m")
        .replaceAll("$client", ".*");
      const r = await query(q);
      expect(r.status, `${title}: ${r.error ?? ""}`).toBe("success");
      expect(r.data?.result.length, `${title}: ${q} returned no data`).toBeGreaterThan(0);
    }
  }, 90_000);
});

describe("request ids", () => {
  it("the same id is in the X-Request-Id header, the log line and the ledger rows", async () => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "rid" },
      body: BODY,
    });
    const id = res.headers["x-request-id"] ?? "";
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const line =
      w
        .logs()
        .split("\n")
        .find((l) => l.includes(id)) ?? "";
    expect(JSON.parse(line)).toMatchObject({
      request_id: id,
      route: "store",
      status: 201,
      paid_atomic: "1400",
    });
    const rows = [...w.proxy.stores.ledger.rows()].filter((r) => r.requestId === id);
    expect(rows.map((r) => r.state)).toEqual(["reserved", "sent", "settled"]);
  });
});

describe("/readyz follows the budget store", () => {
  it("fails while Redis is down and recovers when it returns (with its data)", async () => {
    const redis = await privateRedis({ persist: true });
    await redis.start();
    const world = await startProxyWorld((c) => {
      c.budgetStore = { kind: "redis", url: redis.url, prefix: `stoka-readyz-${process.pid}-${Date.now()}` };
    });
    const probe = new AdminServer({ host: "127.0.0.1", port: 0 }, world.proxy.registry, () =>
      world.proxy.readiness(),
    );
    await probe.listen();
    const ready = async () => {
      const res = await fetch(`${probe.url}/readyz`);
      return { status: res.status, body: (await res.json()) as { reasons?: string[] } };
    };
    const until = async (status: number) => {
      const deadline = Date.now() + 10_000;
      let r = await ready();
      while (r.status !== status && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        r = await ready();
      }
      return r;
    };
    try {
      expect((await until(200)).status).toBe(200);
      await redis.stop();
      const down = await until(503);
      expect(down.status).toBe(503);
      expect(down.body.reasons?.join(" ")).toMatch(/Redis/);
      expect((await fetch(`${probe.url}/healthz`)).status).toBe(200);
      await redis.start();
      expect((await until(200)).status).toBe(200);
      probe.beginShutdown();
      expect((await ready()).status).toBe(503);
    } finally {
      await probe.close();
      await world.close();
      await redis.stop();
    }
  }, 60_000);

  it("/metrics can require a bearer token", async () => {
    const guarded = new AdminServer(
      { host: "127.0.0.1", port: 0 },
      w.proxy.registry,
      async () => [],
      "metrics-secret",
    );
    await guarded.listen();
    try {
      expect((await fetch(`${guarded.url}/metrics`)).status).toBe(401);
      expect(
        (await fetch(`${guarded.url}/metrics`, { headers: { authorization: "Bearer metrics-secret" } }))
          .status,
      ).toBe(200);
    } finally {
      await guarded.close();
    }
  });
});
