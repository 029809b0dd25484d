import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import type { BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import { AdminServer } from "../../src/observability/admin.js";
import { notificationsFileSchema, resolveNotifierConfig } from "../../src/operator/notify/config.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { requireTool } from "../support/tools.js";
import { startWebhookReceiver, until } from "../support/webhook-receiver.js";
import type { WebhookReceiver } from "../support/webhook-receiver.js";

/**
 * Approvals end to end: a real proxy in front of the sandbox emulator, its admin listener, a
 * webhook receiver, the real CLI as a child process and Debian's Chromium. A payment above a
 * budget's mark waits (reserved in the ledger and the budget, nothing signed); approved → paid
 * once; denied or timed out → 402 with the code, nothing signed or charged, the budget
 * released. The emulator's charges are the truth.
 */
const ADMIN = "approvals-admin-token-0123456789abcdef";
const METRICS = "approvals-metrics-token-0123456789abcdef";
const HOOK_SECRET = "approvals-webhook-secret-0123456789abcdef";
/** A 42-byte store costs 1400 atomic units in the emulator's default pricing. */
const PRICE = 1_400n;
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);

interface Pending {
  id: string;
  payment_id: string;
  amount: string;
  route: string;
  path: string;
  budgets: string[];
  reasons: string[];
  deadline: string;
}

interface World {
  w: ProxyWorld;
  admin: AdminServer;
  close(): Promise<void>;
}

async function world(configure: (c: ProxyConfig) => void): Promise<World> {
  const w = await startProxyWorld((c) => {
    c.adminToken = ADMIN;
    c.metricsToken = METRICS;
    configure(c);
  });
  const admin = new AdminServer(
    { host: "127.0.0.1", port: 0 },
    w.proxy.registry,
    () => w.proxy.readiness(),
    METRICS,
    w.proxy.operator.adminRoutes(),
    { adminToken: ADMIN, controls: w.proxy.paymentControls() },
  );
  await admin.listen();
  return {
    w,
    admin,
    close: async () => {
      await admin.close();
      await w.close();
    },
  };
}

const store = (w: ProxyWorld, key: string) =>
  curl({
    proxy: w.proxyUrl,
    method: "POST",
    url: `http://test.api.stoka.space/v1/store?secret-query=${key}`,
    headers: { "X-Stoka-Key": key },
    body: Buffer.from("a".repeat(42)),
  });

async function pending(admin: AdminServer): Promise<Pending[]> {
  const r = await fetch(`${admin.url}/approvals`, { headers: { authorization: `Bearer ${ADMIN}` } });
  expect(r.status).toBe(200);
  return ((await r.json()) as { pending: Pending[] }).pending;
}

/** Waits (bounded) until `n` payments wait, and returns them. */
async function waiting(admin: AdminServer, n: number): Promise<Pending[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const list = await pending(admin);
    if (list.length === n) return list;
    if (Date.now() > deadline) throw new Error(`expected ${n} pending approvals, saw ${list.length}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const decide = (admin: AdminServer, id: string, verb: "approve" | "deny", token = ADMIN, reason = "") =>
  fetch(`${admin.url}/approvals/${id}/${verb}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ reason }),
  });

async function metric(admin: AdminServer, line: RegExp): Promise<number> {
  const text = await (
    await fetch(`${admin.url}/metrics`, { headers: { authorization: `Bearer ${METRICS}` } })
  ).text();
  return Number(line.exec(text)?.[1] ?? NaN);
}

function ledgerState(w: ProxyWorld, paymentId: string): string | undefined {
  return w.proxy.stores.ledger.latest().find((p) => p.paymentId === paymentId)?.state;
}

const refusal = (body: Buffer) =>
  (JSON.parse(body.toString("utf8")) as { proxy: Record<string, unknown> }).proxy;

describe("a budget with approval above a price", () => {
  let x: World;
  let hook: WebhookReceiver;
  const budget = () => x.w.config.budgets[0] as NonNullable<ProxyConfig["budgets"][number]>;

  beforeAll(async () => {
    hook = await startWebhookReceiver(HOOK_SECRET);
    x = await world((c) => {
      const b = c.budgets[0];
      if (b) b.approval = { above: 1_000n, timeoutMs: 20_000 };
      c.notifications = resolveNotifierConfig(
        notificationsFileSchema.parse({
          destinations: [{ name: "ops", url: hook.url, secret_env: "HOOK_SECRET" }],
          rules: [{ events: ["approval.requested"] }],
        }),
        { HOOK_SECRET },
        () => "",
      );
    });
  }, 60_000);

  afterAll(async () => {
    await x?.close();
    await hook?.close();
  });

  it("waits (reserved, nothing signed), tells the webhook, refuses a tokenless approve, then pays once", async () => {
    const answer = store(x.w, "approve-1");
    const [p] = await waiting(x.admin, 1);
    if (!p) throw new Error("no pending approval");
    expect(p.amount).toBe(PRICE.toString());
    expect(p.route).toBe("store");
    expect(p.path).toBe("/v1/store");
    expect(p.budgets).toEqual(["sandbox"]);
    expect(p.reasons.join(" ")).toMatch(/above its approval mark/);
    // While it waits: the ledger row is `reserved`, the budget holds the price, nothing signed.
    expect(ledgerState(x.w, p.payment_id)).toBe("reserved");
    expect(await x.w.proxy.stores.budgets.reserved(budget())).toBe(PRICE);
    expect(x.w.signCalls()).toBe(0);
    expect(await metric(x.admin, /^stoka_proxy_approvals_pending (\d+)$/m)).toBe(1);

    // The webhook: approval.requested, signed, with the id and no query string.
    await until(() => hook.hits.length >= 1, 10_000, "the approval.requested webhook");
    const hit = hook.hits[0];
    expect(await hit?.verified).toBe(true);
    const event = JSON.parse(hit?.body ?? "{}") as { event: string; data: Record<string, unknown> };
    expect(event.event).toBe("approval.requested");
    expect(event.data.approval_id).toBe(p.id);
    expect(event.data.amount).toEqual({ atomic: "1400", usdc: "0.00014 USDC" });
    expect(hit?.body).not.toContain("secret-query");

    // Without the token (or with a wrong one): 401, and it still waits.
    const bare = await fetch(`${x.admin.url}/approvals/${p.id}/approve`, { method: "POST" });
    expect(bare.status).toBe(401);
    expect(((await bare.json()) as { code: string }).code).toBe("admin_unauthorized");
    expect((await decide(x.admin, p.id, "approve", "wrong-token-wrong-token-wrong-tok")).status).toBe(401);
    expect((await fetch(`${x.admin.url}/approvals`)).status).toBe(401);
    expect(await pending(x.admin)).toHaveLength(1);

    const ok = await decide(x.admin, p.id, "approve");
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { decision: string }).decision).toBe("approved");
    const res = await answer;
    expect(res.status).toBe(201);
    expect(x.w.signCalls()).toBe(1);
    expect(x.w.charged()).toBe(PRICE);
    expect(ledgerState(x.w, p.payment_id)).toBe("settled");
    expect(await x.w.proxy.stores.budgets.reserved(budget())).toBe(0n);
    // Decided once: a second approve finds nothing waiting.
    expect((await decide(x.admin, p.id, "approve")).status).toBe(404);
    expect(await metric(x.admin, /^stoka_proxy_approvals_pending (\d+)$/m)).toBe(0);
    expect(await metric(x.admin, /^stoka_proxy_approval_decisions_total\{outcome="approved"\} (\d+)$/m)).toBe(
      1,
    );
  }, 60_000);

  it("denied: 402 approval_denied with the reason, nothing signed or charged, the budget released", async () => {
    const signed = x.w.signCalls();
    const charged = x.w.charged();
    const answer = store(x.w, "deny-1");
    const [p] = await waiting(x.admin, 1);
    if (!p) throw new Error("no pending approval");
    expect((await decide(x.admin, p.id, "deny", ADMIN, "not this one")).status).toBe(200);
    const res = await answer;
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("approval_denied");
    const proxy = refusal(res.body);
    expect(proxy.code).toBe("approval_denied");
    expect(proxy.reason).toMatch(/denied by admin: not this one; nothing was signed/);
    expect(proxy.approval_id).toBe(p.id);
    expect(x.w.signCalls()).toBe(signed);
    expect(x.w.charged()).toBe(charged);
    expect(ledgerState(x.w, p.payment_id)).toBe("failed");
    expect(await x.w.proxy.stores.budgets.reserved(budget())).toBe(0n);
  }, 60_000);

  it("timeout: 402 approval_timeout after the configured wait, nothing signed, released", async () => {
    // The real reload path: the budget's approval now waits one second.
    const current = x.w.proxy.live.current;
    const reloaded = x.w.proxy.reload(
      () => ({
        ...current,
        budgets: current.budgets.map((b) => ({ ...b, approval: { above: 1_000n, timeoutMs: 1_000 } })),
      }),
      "test",
    );
    expect(reloaded.ok).toBe(true);
    const signed = x.w.signCalls();
    const charged = x.w.charged();
    const started = Date.now();
    const res = await store(x.w, "timeout-1");
    const took = Date.now() - started;
    expect(res.status).toBe(402);
    expect(res.headers["x-stoka-proxy-error"]).toBe("approval_timeout");
    expect(refusal(res.body).reason).toMatch(/nobody approved the payment within 1 s/);
    expect(took).toBeGreaterThanOrEqual(950);
    expect(took).toBeLessThan(10_000);
    expect(x.w.signCalls()).toBe(signed);
    expect(x.w.charged()).toBe(charged);
    expect(await x.w.proxy.stores.budgets.reserved(budget())).toBe(0n);
    const failed = x.w.proxy.stores.ledger.latest().filter((l) => l.reason?.startsWith("approval_timeout"));
    expect(failed.map((l) => l.state)).toEqual(["failed"]);
    expect(await metric(x.admin, /^stoka_proxy_approval_decisions_total\{outcome="timeout"\} (\d+)$/m)).toBe(
      1,
    );
    // Without any budget asking, and nothing waiting, the page has no approvals panel.
    const page = async () =>
      (await fetch(`${x.admin.url}/`, { headers: { authorization: `Bearer ${METRICS}` } })).text();
    expect(await page()).toContain('id="approvals"');
    const { approval: _dropped, ...plain } = current.budgets[0] as NonNullable<
      ProxyConfig["budgets"][number]
    >;
    expect(x.w.proxy.reload(() => ({ ...current, budgets: [plain] }), "test").ok).toBe(true);
    expect(await page()).not.toContain('id="approvals"');
    // Back to a long wait for the browser test.
    x.w.proxy.reload(() => current, "test");
  }, 60_000);

  it("the status page shows the waiting payment, and its Approve button (with the typed token) pays it", async () => {
    requireTool("chromium");
    const userDataDir = mkdtempSync(join(tmpdir(), "stoka-approvals-chromium-"));
    let context: BrowserContext | undefined;
    try {
      context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: "/usr/bin/chromium",
        headless: true,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--no-first-run",
        ],
        httpCredentials: { username: "operator", password: METRICS },
        timeout: 45_000,
      });
      const charged = x.w.charged();
      const answer = store(x.w, "browser-1");
      const [p] = await waiting(x.admin, 1);
      if (!p) throw new Error("no pending approval");
      const page = await context.newPage();
      const problems: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error" || m.type() === "warning") problems.push(m.text());
      });
      page.on("pageerror", (e) => problems.push(e.message));
      const html = await (await page.goto(`${x.admin.url}/`, { waitUntil: "load" }))?.text();
      // The page never carries the admin token: the operator types it.
      expect(html).not.toContain(ADMIN);
      const row = page.locator(`tr[data-approval-id="${p.id}"]`);
      expect(await row.count()).toBe(1);
      expect(await row.getAttribute("data-atomic")).toBe(PRICE.toString());
      expect(await page.locator("#approvals").getAttribute("data-count")).toBe("1");
      // Security events counted for the UTC day and month (the 401s above are some).
      const facts = (await page.locator("dl.facts").textContent()) ?? "";
      expect(facts).toMatch(/security events today\s*[1-9]/);
      expect(facts).toMatch(/security events this month\s*[1-9]/);
      await row.locator('input[name="token"]').fill(ADMIN);
      await Promise.all([
        page.waitForURL(`${x.admin.url}/#approvals`),
        row.locator("button.approve").click(),
      ]);
      expect((await answer).status).toBe(201);
      expect(x.w.charged()).toBe(charged + PRICE);
      // Back on the page: nothing waits any more.
      await page.reload({ waitUntil: "load" });
      expect(await page.locator("#approvals").getAttribute("data-count")).toBe("0");
      expect(problems).toEqual([]);
      await page.close();
    } finally {
      await context?.close();
      rmSync(userDataDir, { recursive: true, force: true });
    }
  }, 120_000);

  it("the app leaving while it waits: released, nothing signed, counted as client_gone", async () => {
    const signed = x.w.signCalls();
    const charged = x.w.charged();
    // curl gives up after a second (the last --max-time wins): the app closes its connection.
    const left = curl({
      proxy: x.w.proxyUrl,
      method: "POST",
      url: "http://test.api.stoka.space/v1/store",
      headers: { "X-Stoka-Key": "gone-1" },
      body: Buffer.from("a".repeat(42)),
      extra: ["--max-time", "1"],
    }).catch((e: unknown) => e);
    const [p] = await waiting(x.admin, 1);
    if (!p) throw new Error("no pending approval");
    expect(await left).toBeInstanceOf(Error);
    await waiting(x.admin, 0);
    expect(
      await metric(x.admin, /^stoka_proxy_approval_decisions_total\{outcome="client_gone"\} (\d+)$/m),
    ).toBe(1);
    expect(ledgerState(x.w, p.payment_id)).toBe("failed");
    expect(await x.w.proxy.stores.budgets.reserved(budget())).toBe(0n);
    expect(x.w.signCalls()).toBe(signed);
    expect(x.w.charged()).toBe(charged);
  }, 60_000);

  it("a form post from another site, or without the token, decides nothing", async () => {
    const answer = store(x.w, "csrf-1");
    const [p] = await waiting(x.admin, 1);
    if (!p) throw new Error("no pending approval");
    const form = (body: string, headers: Record<string, string> = {}) =>
      fetch(`${x.admin.url}/approvals/${p.id}/approve`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body,
      });
    expect((await form("reason=x")).status).toBe(401);
    expect((await form(`token=${ADMIN}`, { "sec-fetch-site": "cross-site" })).status).toBe(403);
    expect((await form(`token=${ADMIN}`, { origin: "http://evil.example" })).status).toBe(403);
    expect(await pending(x.admin)).toHaveLength(1);
    // The same form from the page itself: decided, and sent back to the page.
    const denied = await fetch(`${x.admin.url}/approvals/${p.id}/deny`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" },
      body: `token=${ADMIN}`,
    });
    expect(denied.status).toBe(303);
    expect(denied.headers.get("location")).toBe("/#approvals");
    const res = await answer;
    expect(res.headers["x-stoka-proxy-error"]).toBe("approval_denied");
    expect(refusal(res.body).reason).toMatch(/denied by status page/);
    // Neither token, nor a query string, ever reached the log.
    const logs = x.w.logs();
    expect(logs).toContain("payment waits for approval");
    for (const secret of [ADMIN, METRICS, "secret-query"]) expect(logs).not.toContain(secret);
  }, 60_000);
});

describe("a budget with a daily mark", () => {
  let x: World;
  let dir: string;
  const budget = () => x.w.config.budgets[0] as NonNullable<ProxyConfig["budgets"][number]>;
  const cli = async (args: string[], env: Record<string, string> = {}) => {
    try {
      const r = await run(
        process.execPath,
        [
          "--import",
          pathToFileURL(join(ROOT, "node_modules/tsx/dist/loader.mjs")).href,
          join(ROOT, "src/cli/main.ts"),
          "approvals",
          ...args,
          "--admin",
          x.admin.url,
        ],
        { cwd: ROOT, timeout: 30_000, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } },
      );
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { code: err.code ?? -1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "stoka-approvals-cli-"));
    writeFileSync(join(dir, "token"), `${ADMIN}\n`, { mode: 0o600 });
    x = await world((c) => {
      const b = c.budgets[0];
      if (!b || !b.limits[0]) throw new Error("the sandbox has a budget with a day limit");
      // One payment fits under the mark; the second passes it and waits; a third would not fit.
      b.limits[0].amount = 3_000n;
      b.approval = { dailyMark: 1_500n, timeoutMs: 30_000 };
    });
  }, 60_000);

  afterAll(async () => {
    await x?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("pays under the mark, holds the payment that passes it (counted), refuses what would exceed, approves by CLI", async () => {
    expect((await store(x.w, "day-1")).status).toBe(201);
    expect(x.w.charged()).toBe(PRICE);

    const second = store(x.w, "day-2");
    const [p] = await waiting(x.admin, 1);
    if (!p) throw new Error("no pending approval");
    expect(p.reasons.join(" ")).toMatch(/spend today with this payment, 0.00028 USDC, passes its daily mark/);
    // The waiting payment holds its part of the day: a third one would pass the limit.
    expect(await x.w.proxy.stores.budgets.reserved(budget())).toBe(PRICE);
    const third = await store(x.w, "day-3");
    expect(third.status).toBe(402);
    expect(third.headers["x-stoka-proxy-error"]).toBe("budget_exceeded");
    expect(await pending(x.admin)).toHaveLength(1);

    // The CLI: the token from a file or the environment, never from the command line.
    const noToken = await cli(["list"]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/no admin token/);
    const wrong = await cli(["list"], { STOKA_PROXY_ADMIN_TOKEN: "wrong-token-wrong-token-wrong-tok" });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/401/);
    const listed = await cli(["list", "--json"], { STOKA_PROXY_ADMIN_TOKEN: ADMIN });
    expect(listed.code).toBe(0);
    const ids = (JSON.parse(listed.stdout) as { pending: Pending[] }).pending.map((q) => q.id);
    expect(ids).toEqual([p.id]);
    const table = await cli(["--token-file", join(dir, "token")]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(p.id);
    expect(table.stdout).toContain("0.00014 USDC");
    const approved = await cli(["approve", p.id, "--token-file", join(dir, "token")]);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toBe(`approved ${p.id}\n`);

    expect((await second).status).toBe(201);
    expect(x.w.charged()).toBe(2n * PRICE);
    expect(x.w.signCalls()).toBe(2);
    const again = await cli(["deny", p.id, "--token-file", join(dir, "token")]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/404 no payment waits/);
    for (const out of [listed, table, approved, again, wrong])
      expect(out.stdout + out.stderr).not.toContain(ADMIN);
  }, 90_000);
});

describe("a proxy stopping while a payment waits", () => {
  it("refuses it (402 approval_denied), releases it, and drains without waiting for the deadline", async () => {
    const x = await world((c) => {
      const b = c.budgets[0];
      if (b) b.approval = { above: 1_000n, timeoutMs: 60_000 };
    });
    try {
      const answer = store(x.w, "stop-1");
      const [p] = await waiting(x.admin, 1);
      if (!p) throw new Error("no pending approval");
      const started = Date.now();
      const drained = await x.w.proxy.shutdown(10_000);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(drained.cut).toBe(0);
      const res = await answer;
      expect(res.status).toBe(402);
      expect(res.headers["x-stoka-proxy-error"]).toBe("approval_denied");
      expect(refusal(res.body).reason).toMatch(/shutting down; nothing was signed/);
      expect(x.w.signCalls()).toBe(0);
      expect(x.w.charged()).toBe(0n);
    } finally {
      await x.close();
    }
  }, 60_000);
});
