import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keypair } from "@stellar/stellar-sdk";
import { chromium } from "playwright-core";
import type { BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer } from "../../src/observability/admin.js";
import { STATUS_CSP } from "../../src/observability/status-routes.js";
import { formatUsdc } from "../../src/stellar/amount.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { requireTool } from "../support/tools.js";

/**
 * The status page as the admin listener serves it, in front of a real proxy and the sandbox
 * emulator: scripted paid requests (settled, rejected by stoka, refused for its terms, one
 * indeterminate through the emulator's drop-after-settle switch), then Debian's Chromium opens
 * `/` with the admin token: no console error, no CSP violation, nothing fetched but the page,
 * and the page's numbers are the ledger's and the budget store's. Screenshot in test/artifacts/.
 */
const TOKEN = "status-admin-token-0123456789abcdef";
const ROOT = new URL("../..", import.meta.url).pathname;
const ARTIFACTS = join(ROOT, "test/artifacts");
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--no-first-run",
];

let w: ProxyWorld;
let admin: AdminServer;
let context: BrowserContext;
let userDataDir: string;

const store = (key: string, host = "test.api.stoka.space") =>
  curl({
    proxy: w.proxyUrl,
    method: "POST",
    url: `http://${host}/v1/store`,
    headers: { "X-Stoka-Key": key },
    body: Buffer.from("s".repeat(42)),
  });

beforeAll(async () => {
  requireTool("chromium");
  w = await startProxyWorld((c, sandbox) => {
    c.metricsToken = TOKEN;
    // A paid host whose pinned payee is not the emulator's: its 402 is refused for its terms.
    c.paidHosts.push({
      host: "untrusted.example",
      upstream: new URL(sandbox.emulator.httpUrl),
      payTo: [Keypair.random().publicKey()],
    });
  });
  admin = new AdminServer(
    { host: "127.0.0.1", port: 0 },
    w.proxy.registry,
    () => w.proxy.readiness(),
    TOKEN,
    w.proxy.operator.adminRoutes(),
  );
  await admin.listen();
  userDataDir = mkdtempSync(join(tmpdir(), "stoka-admin-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
    httpCredentials: { username: "operator", password: TOKEN },
    timeout: 45_000,
  });
}, 90_000);

afterAll(async () => {
  await context?.close();
  await admin?.close();
  await w?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

describe("the status page on the admin listener", () => {
  it("asks for the admin token: Bearer, or Basic with the token as password", async () => {
    const open = await fetch(`${admin.url}/`);
    expect(open.status).toBe(401);
    expect(open.headers.get("www-authenticate")).toMatch(/^Basic realm=/);
    const wrong = await fetch(`${admin.url}/`, {
      headers: { authorization: `Basic ${Buffer.from("x:not-the-token").toString("base64")}` },
    });
    expect(wrong.status).toBe(401);
    const bearer = await fetch(`${admin.url}/`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(bearer.status).toBe(200);
    expect(bearer.headers.get("content-security-policy")).toBe(STATUS_CSP);
    expect(bearer.headers.get("cache-control")).toBe("no-store");
    expect(await bearer.text()).toContain("<!doctype html>");
    // The refused attempts are security events.
    await w.proxy.operator.events.settle();
    const stored = await w.proxy.operator.store.list({ code: "admin_auth_required" });
    expect(stored.length).toBe(2);
  });

  it("shows the ledger's payments and the budget's numbers in Chromium, cleanly", async () => {
    expect((await store("settled-1")).status).toBe(201);
    expect((await store("settled-2")).status).toBe(201);
    w.sandbox.emulator.addFault({ kind: "settle_fails", remaining: 1 });
    expect((await store("rejected-1")).status).toBe(402);
    w.sandbox.emulator.addFault({ kind: "drop_after_settle", remaining: 1 });
    const dropped = await store("indeterminate-1");
    expect(dropped.headers["x-stoka-proxy-error"]).toBe("payment_indeterminate");
    const refused = await store("refused-1", "untrusted.example");
    expect(refused.headers["x-stoka-proxy-error"]).toBe("terms_rejected");

    const latest = w.proxy.stores.ledger.latest();
    const states = latest.map((p) => p.state).sort();
    expect(states).toEqual(["indeterminate", "rejected", "settled", "settled"]);
    const spentToday = latest
      .filter((p) => p.state === "settled" || p.state === "indeterminate")
      .reduce((a, p) => a + p.amount, 0n);
    // The emulator charged exactly what the ledger counts as (maybe) spent.
    expect(w.charged()).toBe(spentToday);
    const budget = w.config.budgets[0];
    const limit = budget?.limits[0];
    if (!budget || !limit) throw new Error("the sandbox has a budget");
    const used = await w.proxy.stores.budgets.used(budget, limit, Date.now());

    // Past the page's cache, so the page shows these requests. The cache holds a view for 1 s,
    // or 10× its build time when builds are slow (a loaded machine): wait until it has expired.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const html = await (await fetch(`${admin.url}/`)).text();
      if (html.includes(`data-window="today" data-total="${spentToday}"`) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const page = await context.newPage();
    const consoleProblems: string[] = [];
    const requests: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") consoleProblems.push(m.text());
    });
    page.on("pageerror", (e) => consoleProblems.push(e.message));
    page.on("request", (r) => requests.push(r.url()));
    const response = await page.goto(`${admin.url}/`, { waitUntil: "load" });
    expect(response?.status()).toBe(200);
    expect(consoleProblems).toEqual([]);
    expect(requests).toEqual([`${admin.url}/`]);
    expect(await page.title()).toBe("stoka-proxy status");

    // Today's spend is the ledger's.
    const today = page.locator('div.panel[data-window="today"]');
    expect(await today.getAttribute("data-total")).toBe(spentToday.toString());
    expect(await today.textContent()).toContain(formatUsdc(spentToday));
    // The budget's limit row: spent + reserved is what the budget store counts.
    const row = page.locator(`.limit[data-budget="${budget.name}"][data-period="day"]`);
    expect(await row.getAttribute("data-limit")).toBe(limit.amount.toString());
    const spent = BigInt((await row.getAttribute("data-spent")) ?? "-1");
    const reserved = BigInt((await row.getAttribute("data-reserved")) ?? "-1");
    expect(spent + reserved).toBe(used);
    // Payments: the indeterminate one first, then the others, newest first; all four shown.
    const rows = await page
      .locator("#payment-rows tbody tr[data-payment-id]")
      .evaluateAll((trs) =>
        trs.map((tr) => [tr.getAttribute("data-payment-id"), tr.getAttribute("data-state")]),
      );
    expect(rows).toHaveLength(4);
    const indeterminate = latest.find((p) => p.state === "indeterminate");
    expect(rows[0]).toEqual([indeterminate?.paymentId, "indeterminate"]);
    expect(await page.locator("#indeterminate").textContent()).toContain("stoka-proxy reconcile");
    // The interception CA's fingerprint and how to trust it.
    const ca = new X509Certificate(readFileSync(w.config.tls.caCertFile ?? "", "utf8"));
    expect(await page.locator("code.fingerprint").textContent()).toBe(ca.fingerprint256);

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, "status-page-admin.png");
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    await page.close();
  }, 120_000);

  it("a refresh storm reads the stores at most once a second", async () => {
    const ledger = w.proxy.stores.ledger;
    const original = ledger.latest.bind(ledger);
    let reads = 0;
    ledger.latest = () => {
      reads += 1;
      return original();
    };
    try {
      await new Promise((r) => setTimeout(r, 1_100));
      const started = Date.now();
      const answers = await Promise.all(
        Array.from({ length: 100 }, () =>
          fetch(`${admin.url}/`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.status),
        ),
      );
      expect(answers.every((s) => s === 200)).toBe(true);
      const seconds = Math.ceil((Date.now() - started) / 1000);
      expect(reads).toBeGreaterThanOrEqual(1);
      expect(reads).toBeLessThanOrEqual(seconds + 1);
    } finally {
      ledger.latest = original;
    }
  }, 60_000);
});
