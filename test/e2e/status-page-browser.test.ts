import http from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderStatusPage, STATUS_PAGE_CSP } from "../../src/operator/status/render.js";
import { formatUsdc } from "../../src/stellar/amount.js";
import { HOSTILE, sampleView } from "../support/status-fixture.js";
import { requireTool } from "../support/tools.js";

/**
 * The status page in a real headless Chromium (Debian's), served with the CSP the admin
 * listener will send: it loads with no console error and no CSP violation, asks for nothing
 * but itself, shows the view's numbers, and hostile names stay text. A screenshot is written
 * to test/artifacts/status-page.png.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const ARTIFACTS = join(ROOT, "test/artifacts");
const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
];

/** A value for a double-quoted CSS attribute selector. */
const cssString = (s: string) => s.replace(/["\\]/g, "\\$&");

interface Served {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

/** Serves `body` at `/` with the status page's CSP; records every request it receives. */
async function serve(body: string): Promise<Served> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.url !== "/") {
      res.writeHead(404).end();
      return;
    }
    res
      .writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": STATUS_PAGE_CSP,
        "cache-control": "no-store",
      })
      .end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface Problems {
  console: string[];
  pageErrors: string[];
  violations: () => Promise<string[]>;
}

/** Collects console errors, page errors and CSP violation events (recorded by the harness). */
async function watch(page: Page): Promise<Problems> {
  const consoleErrors: string[] = [];
  const pageErrors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") consoleErrors.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => pageErrors.push(e.message));
  // Runs in the harness's own world before the page: the page itself needs no script. (This
  // project compiles without the DOM library, hence the narrow types.)
  await page.addInitScript(() => {
    interface Violation {
      violatedDirective: string;
      blockedURI: string;
    }
    const g = globalThis as unknown as {
      __violations: string[];
      document: { addEventListener(type: string, fn: (e: Violation) => void): void };
    };
    g.__violations = [];
    g.document.addEventListener("securitypolicyviolation", (e) => {
      g.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return {
    console: consoleErrors,
    pageErrors,
    violations: () => page.evaluate(() => (globalThis as unknown as { __violations: string[] }).__violations),
  };
}

let context: BrowserContext;
let userDataDir: string;
const servers: Served[] = [];

beforeAll(async () => {
  requireTool("chromium");
  userDataDir = mkdtempSync(join(tmpdir(), "stoka-status-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 900 },
    timeout: 45_000,
  });
}, 60_000);

afterAll(async () => {
  await context?.close();
  for (const s of servers) await s.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

describe("the status page in Chromium", () => {
  it("a page that breaks the CSP is caught by this harness (the check can fail)", async () => {
    const s = await serve(
      `<!doctype html><html><head><title>x</title><link rel="icon" href="data:,"></head><body><script>document.title = "ran"</script><p>x</p></body></html>`,
    );
    servers.push(s);
    const page = await context.newPage();
    const problems = await watch(page);
    await page.goto(s.url, { waitUntil: "load" });
    expect(await page.title()).toBe("x");
    await expect.poll(() => problems.violations()).not.toHaveLength(0);
    expect(problems.console.join("\n")).toMatch(/Content Security Policy/);
    await page.close();
  });

  it("loads cleanly, shows the view's numbers, keeps hostile names as text", async () => {
    const view = sampleView({ manyOld: 60 });
    const s = await serve(renderStatusPage(view));
    servers.push(s);
    const page = await context.newPage();
    const problems = await watch(page);
    const response = await page.goto(s.url, { waitUntil: "load" });
    expect(response?.status()).toBe(200);

    expect(problems.console).toEqual([]);
    expect(problems.pageErrors).toEqual([]);
    expect(await problems.violations()).toEqual([]);
    // Nothing but the page itself was asked for (no favicon, no assets).
    expect(s.requests).toEqual(["GET /"]);

    // Hostile strings are text; nothing ran.
    expect(await page.title()).toBe("stoka-proxy status");
    expect(await page.locator("script, img, iframe").count()).toBe(0);
    const indeterminateRow = page.locator('tr[data-payment-id="pay-3"]');
    expect(await indeterminateRow.locator("td").nth(3).textContent()).toBe(HOSTILE.route);
    expect(await indeterminateRow.locator("td").nth(4).textContent()).toBe(HOSTILE.client);
    expect(await indeterminateRow.locator("td.tx").getAttribute("title")).toBe(HOSTILE.tx);

    // Budgets: every limit row carries and shows the view's numbers; the bars have its widths.
    for (const b of view.budgets) {
      for (const l of b.limits) {
        const row = page.locator(
          `.limit[data-budget="${cssString(b.name)}"][data-period="${cssString(l.period)}"]`,
        );
        expect(await row.count()).toBe(1);
        expect(await row.getAttribute("data-limit")).toBe(l.limit.toString());
        expect(await row.getAttribute("data-spent")).toBe(l.spent.toString());
        expect(await row.getAttribute("data-reserved")).toBe(l.reserved.toString());
        expect(await row.getAttribute("data-over")).toBe(String(l.overLimit));
        const text = (await row.textContent()) ?? "";
        for (const a of [l.spent, l.reserved, l.limit]) expect(text).toContain(formatUsdc(a));
        const bar = await row.locator(".bar").boundingBox();
        const spent = await row.locator(".bar .spent").boundingBox();
        expect(bar).not.toBeNull();
        expect(
          Math.abs((spent?.width ?? 0) - ((bar?.width ?? 0) * l.spentBasisPoints) / 10_000),
        ).toBeLessThan(1.5);
      }
    }
    expect(await page.locator(".limit.over .flag").allTextContents()).toEqual(["over the limit"]);

    // Spend tables: today's and this month's rows and totals.
    for (const [window, table] of [
      ["today", view.today],
      ["month", view.month],
    ] as const) {
      const panel = page.locator(`div.panel[data-window="${window}"]`);
      expect(await panel.getAttribute("data-total")).toBe(table.total.toString());
      for (const [by, rows] of [
        ["route", table.byRoute],
        ["client", table.byClient],
      ] as const) {
        const shown = await panel
          .locator(`table[data-by="${by}"] tbody tr[data-key]`)
          .evaluateAll((trs) =>
            trs.map((tr) => [
              tr.getAttribute("data-key"),
              tr.getAttribute("data-total"),
              tr.getAttribute("data-payments"),
            ]),
          );
        expect(shown).toEqual(rows.map((r) => [r.key, r.total.toString(), String(r.payments)]));
      }
    }

    // Payments: the view's rows in its order (indeterminate first), at most 50.
    const rows = await page
      .locator("#payment-rows tbody tr[data-payment-id]")
      .evaluateAll((trs) =>
        trs.map((tr) => [
          tr.getAttribute("data-payment-id"),
          tr.getAttribute("data-state"),
          tr.getAttribute("data-atomic"),
        ]),
      );
    expect(rows).toEqual(view.payments.rows.map((p) => [p.id, p.state, p.amount.toString()]));
    expect(rows).toHaveLength(50);
    expect(rows[0]?.[1]).toBe("indeterminate");

    // Amounts: USDC text, the atomic value on hover.
    const amount = page.locator('tr[data-payment-id="pay-1"] span.usdc');
    expect(await amount.textContent()).toBe("0.25 USDC");
    expect(await amount.getAttribute("title")).toBe("2500000 atomic units");

    expect(await page.locator("#indeterminate").textContent()).toContain("stoka-proxy reconcile");
    expect(await page.locator("code.fingerprint").textContent()).toBe(view.ca?.fingerprintSha256);

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, "status-page.png");
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    await page.close();
  }, 60_000);
});
