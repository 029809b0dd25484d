import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { AdminServer } from "../../src/observability/admin.js";
import { createLogger } from "../../src/observability/logger.js";
import { StokaProxy } from "../../src/proxy/server.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { freePort, privateRedis } from "../support/redis-server.js";
import { requireTool } from "../support/tools.js";

/**
 * Metrics equal the ledger's and the emulator's counts after a scripted run; a real Prometheus
 * scrapes three replicas sharing one store and every PromQL expression of the Grafana
 * dashboard returns data, without counting a shared gauge once per replica.
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
/**
 * Two more replicas of the same proxy on the same data directory: one SQLite file holds the
 * ledger and the budgets of all three (as one PostgreSQL database does for a gateway), so all
 * three report the same budget and indeterminate gauges, and each its own counters.
 */
const replicas: { proxy: StokaProxy; admin: AdminServer }[] = [];
beforeAll(async () => {
  w = await startProxyWorld();
  admin = new AdminServer({ host: "127.0.0.1", port: 0 }, w.proxy.registry, () => w.proxy.readiness());
  await admin.listen();
  const quiet = new PassThrough().resume();
  for (let i = 0; i < 2; i++) {
    const proxy = new StokaProxy(w.config, { logger: createLogger("info", quiet) });
    await proxy.listen();
    const replicaAdmin = new AdminServer({ host: "127.0.0.1", port: 0 }, proxy.registry, () =>
      proxy.readiness(),
    );
    await replicaAdmin.listen();
    replicas.push({ proxy, admin: replicaAdmin });
  }
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
  for (const r of replicas) {
    await r.admin.close();
    await r.proxy.close();
  }
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

describe("a real Prometheus scrapes three replicas; every dashboard query returns data", () => {
  let prom: ChildProcess | undefined;
  let promUrl = "";
  afterAll(() => {
    prom?.kill("SIGTERM");
  });

  type Sample = { metric: Record<string, string>; value: [number, string] };
  const query = async (q: string) => {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
    return (await res.json()) as { status: string; data?: { result: Sample[] }; error?: string };
  };
  /** The dashboard's variables as Grafana fills them: "All" is the allValue `.*`. */
  const fill = (expr: string, instance = ".*") =>
    expr
      .replaceAll("$__rate_interval", "1m")
      .replaceAll("$__range", "5m")
      .replaceAll("$client", ".*")
      .replaceAll("$job", "stoka-proxy")
      .replaceAll("$instance", instance);
  const dashboard = JSON.parse(readFileSync(join(ROOT, "grafana/dashboards/stoka-proxy.json"), "utf8")) as {
    panels: { id: number; title: string; targets: { refId: string; expr: string }[] }[];
    templating: { list: { name: string; type: string }[] };
  };
  const target = (panelId: number, refId: string): { title: string; expr: string } => {
    const panel = dashboard.panels.find((p) => p.id === panelId);
    const t = panel?.targets.find((x) => x.refId === refId);
    if (!panel || !t) throw new Error(`no panel ${panelId} target ${refId} in the dashboard`);
    return { title: panel.title, expr: t.expr };
  };
  /** One series per label set (the labels the panel keeps), to compare with one replica's scrape. */
  const byLabels = (result: Sample[], keys: string[]) =>
    Object.fromEntries(result.map((r) => [keys.map((k) => r.metric[k] ?? "").join("/"), Number(r.value[1])]));

  const admins = () => [admin, ...replicas.map((r) => r.admin)];
  const proxyUrls = () => [w.proxyUrl, ...replicas.map((r) => r.proxy.url)];

  it("has job and instance variables, and every expression selects by them", () => {
    const names = dashboard.templating.list.map((v) => v.name);
    expect(names).toEqual(expect.arrayContaining(["datasource", "job", "instance", "client"]));
    expect(dashboard.templating.list.find((v) => v.name === "datasource")?.type).toBe("datasource");
    for (const p of dashboard.panels)
      for (const t of p.targets) {
        for (const selector of t.expr.matchAll(/stoka_proxy_[a-z_]+\{([^}]*)\}/g))
          expect(selector[1], `${p.title}: ${t.expr}`).toMatch(/job=~"\$job", instance=~"\$instance"/);
        expect(t.expr, `${p.title}: every metric has a selector`).not.toMatch(
          /stoka_proxy_[a-z_]+(?![a-z_{])/,
        );
      }
  });

  it("evaluates each PromQL expression of grafana/dashboards/stoka-proxy.json against 3 replicas", async () => {
    requireTool("prometheus");
    const dir = mkdtempSync(join(tmpdir(), "stoka-prom-"));
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const targets = admins().map((a) => `"${new URL(a.url).host}"`);
    writeFileSync(
      join(dir, "prometheus.yml"),
      `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: stoka-proxy\n    static_configs: [{ targets: [${targets.join(", ")}] }]\n`,
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
    // Traffic through every replica in turn until each has been scraped several times with
    // counters in it (rates need two samples).
    const deadline = Date.now() + 60_000;
    let scraped = 0;
    for (let i = 0; Date.now() < deadline; i++) {
      if (spawnError) throw new Error(`prometheus did not start: ${spawnError.message}`);
      const r = await query('min(count_over_time(stoka_proxy_requests_total{job="stoka-proxy"}[1m]))').catch(
        () => undefined,
      );
      const perInstance = await query("count(count by (instance) (stoka_proxy_requests_total))").catch(
        () => undefined,
      );
      scraped = Number(r?.data?.result[0]?.value[1] ?? 0);
      if (scraped >= 4 && Number(perInstance?.data?.result[0]?.value[1] ?? 0) === 3) break;
      await curl({
        proxy: proxyUrls()[i % 3] as string,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": `tick-${i}-${Date.now()}` },
        body: BODY,
      });
      await new Promise((res) => setTimeout(res, 300));
    }
    expect(scraped).toBeGreaterThanOrEqual(4);
    // Traffic stops; wait for a scrape of every replica after it, so that Prometheus holds
    // what the replicas hold now.
    const quietSince = Date.now() / 1000;
    const fresh = Date.now() + 20_000;
    while (Date.now() < fresh) {
      const r = await query('min(timestamp(stoka_proxy_budget_store_state_lost{job="stoka-proxy"}))');
      if (Number(r.data?.result[0]?.value[1] ?? 0) > quietSince + 1.5) break;
      await new Promise((res) => setTimeout(res, 250));
    }

    expect(dashboard.panels.flatMap((p) => p.targets).length).toBeGreaterThanOrEqual(18);
    for (const p of dashboard.panels)
      for (const t of p.targets) {
        const q = fill(t.expr);
        const r = await query(q);
        expect(r.error ?? "", `${p.title}: ${q}`).not.toMatch(/many-to-many|duplicate series/);
        expect(r.status, `${p.title}: ${r.error ?? ""}`).toBe("success");
        expect(r.data?.result.length, `${p.title}: ${q} returned no data`).toBeGreaterThan(0);
      }

    // Three replicas report, each the same budget gauges (read from the one store).
    expect(Number((await query(fill(target(18, "A").expr))).data?.result[0]?.value[1])).toBe(3);
    const spentSeries = await query('stoka_proxy_budget_spent_atomic{job="stoka-proxy", period="day"}');
    expect(spentSeries.data?.result).toHaveLength(3);
    expect(new Set(spentSeries.data?.result.map((r) => r.value[1])).size).toBe(1);

    // Each budget panel shows what one replica alone reports: no ×3.
    const one = await scrape();
    const gauge = (name: string, labels: Record<string, string>) => sum(one, name, labels);
    const budgetKeys = one
      .filter((m) => m.name === "stoka_proxy_budget_limit_atomic")
      .map((m) => ({ budget: m.labels.budget ?? "", period: m.labels.period ?? "" }));
    expect(budgetKeys.length).toBeGreaterThan(0);
    const burn = Object.fromEntries(
      budgetKeys.map((k) => [
        `${k.budget}/${k.period}`,
        gauge("stoka_proxy_budget_spent_atomic", k) / gauge("stoka_proxy_budget_limit_atomic", k),
      ]),
    );
    const remaining = Object.fromEntries(
      budgetKeys.map((k) => [
        `${k.budget}/${k.period}`,
        (gauge("stoka_proxy_budget_limit_atomic", k) - gauge("stoka_proxy_budget_spent_atomic", k)) / 1e7,
      ]),
    );
    const reserved = Object.fromEntries(
      one
        .filter((m) => m.name === "stoka_proxy_budget_reserved_atomic")
        .map((m) => [m.labels.budget ?? "", m.value / 1e7]),
    );
    expect(Object.values(burn).some((v) => v > 0)).toBe(true);
    const oneInstance = new URL(admin.url).host.replaceAll(".", "\\\\.");
    for (const instance of [".*", oneInstance]) {
      const at = async (panel: number, ref: string, keys: string[]) =>
        byLabels((await query(fill(target(panel, ref).expr, instance))).data?.result ?? [], keys);
      expect(await at(3, "A", ["budget", "period"])).toEqual(burn);
      expect(await at(4, "A", ["budget", "period"])).toEqual(remaining);
      expect(await at(4, "B", ["budget"])).toEqual(reserved);
      expect(await at(8, "A", [])).toEqual({ "": sum(one, "stoka_proxy_indeterminate_payments") });
    }

    // Counters are each replica's own: the panels add them up.
    const all = await Promise.all(
      admins().map(async (a) => parseMetrics(await (await fetch(`${a.url}/metrics`)).text())),
    );
    const perReplica = all.map((m) => sum(m, "stoka_proxy_payments_total", { outcome: "settled" }));
    expect(perReplica.filter((n) => n > 0)).toHaveLength(3);
    const total = await query('sum(stoka_proxy_payments_total{job="stoka-proxy", outcome="settled"})');
    expect(Number(total.data?.result[0]?.value[1])).toBe(perReplica.reduce((a, b) => a + b, 0));
  }, 120_000);
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
      paid_usdc: "0.00014 USDC",
      level: "info",
    });
    expect((JSON.parse(line) as { time: string }).time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const rows = [...w.proxy.stores.ledger.rows()].filter((r) => r.requestId === id);
    expect(rows.map((r) => r.state)).toEqual(["reserved", "sent", "settled"]);
  });

  it("an app's own X-Request-Id is kept (header, log line, ledger), as Envoy keeps it", async () => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store`,
      headers: { "X-Stoka-Key": "rid-app", "X-Request-Id": "app-trace:42.a_b" },
      body: BODY,
    });
    expect(res.headers["x-request-id"]).toBe("app-trace:42.a_b");
    expect(w.logs()).toContain('"request_id":"app-trace:42.a_b"');
    const rows = [...w.proxy.stores.ledger.rows()].filter((r) => r.requestId === "app-trace:42.a_b");
    expect(rows.map((r) => r.state)).toEqual(["reserved", "sent", "settled"]);
  });

  it.each([
    ["too long", "a".repeat(129)],
    ["with characters bound for a log injection", 'x" "level":"fatal'],
  ])("an X-Request-Id %s is replaced by a minted one", async (_name, given) => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "GET",
      url: `${BASE}/.well-known/stoka.json`,
      headers: { "X-Request-Id": given },
    });
    expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
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
