import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reconcileCommand, spend } from "../../src/cli/ledger-commands.js";
import { progressLine } from "../../src/cli/output.js";
import { createLogger } from "../../src/observability/logger.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * `reconcile` and `spend` as a person and a script read them, against a running sandbox: USDC
 * in aligned tables for people; snake_case JSON with atomic amounts for scripts.
 */
let w: ProxyWorld;

beforeAll(async () => {
  w = await startProxyWorld();
  const res = await curl({
    proxy: w.proxyUrl,
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    headers: { "X-Stoka-Key": "reconcile-me" },
    body: Buffer.from("r".repeat(42)),
  });
  expect(res.status).toBe(201);
}, 60_000);

afterAll(async () => {
  await w.close();
});

describe("reconcile and spend output", () => {
  it("reconcile --json: one style (snake_case), atomic amounts as strings", async () => {
    let out = "";
    const code = await reconcileCommand(w.config, createLogger("silent"), 2, false, true, (t) => (out += t));
    expect(code).toBe(0);
    const days = JSON.parse(out) as Record<string, unknown>[];
    const today = days.find((d) => d.ledger_settled !== "0");
    expect(today).toMatchObject({
      ledger_settled: "1400",
      upstream: "1400",
      difference: "0",
      status: "match",
    });
    for (const d of days) for (const k of Object.keys(d)) expect(k).toMatch(/^[a-z_]+$/);
  }, 30_000);

  it("reconcile for people: USDC in an aligned table", async () => {
    let out = "";
    await reconcileCommand(w.config, createLogger("silent"), 2, false, false, (t) => (out += t));
    // The table, then (after a blank line) which wallet was reconciled and any notes.
    const [tablePart = "", notes = ""] = out.split("\n\n");
    expect(notes).toMatch(/^wallet: G[A-Z2-7]{55}$/m);
    const lines = tablePart.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^DATE\s+STOKA\s+LEDGER SETTLED\s+INDETERMINATE\s+DIFFERENCE\s+STATUS$/);
    expect(out).toMatch(/^\d{4}-\d\d-\d\d\s+0\.00014 USDC\s+0\.00014 USDC\s+0 USDC\s+0 USDC\s+match$/m);
    // Aligned: every row puts STATUS in the same column.
    const at = (lines[0] ?? "").indexOf("STATUS");
    for (const l of lines.slice(1)) expect(l.slice(at)).toMatch(/^(match|mismatch|all_|no_)/);
  }, 30_000);

  it("spend --json keeps its snake_case shape", async () => {
    let out = "";
    await spend(w.config, true, (t) => (out += t));
    expect(JSON.parse(out)).toMatchObject({
      budgets: [{ budget: "sandbox", period: "day", used: "1400", limit: "10000000", reserved: "0" }],
      routes: [{ route: "store", client: "default", today: "1400", this_month: "1400", indeterminate: "0" }],
    });
  });

  it("the progress line shows only on a terminal, and is cleared", () => {
    const stream = (isTTY: boolean, written: string[]) =>
      ({ isTTY, write: (t: string) => written.push(t) > 0 }) as unknown as NodeJS.WriteStream;
    const onTty: string[] = [];
    const p = progressLine(stream(true, onTty), 0);
    p.update("ledger export: 500 rows…");
    p.done();
    expect(onTty.join("")).toBe("\r\x1b[Kledger export: 500 rows…\r\x1b[K");
    const onPipe: string[] = [];
    const q = progressLine(stream(false, onPipe), 0);
    q.update("x");
    q.done();
    expect(onPipe).toEqual([]);
  });
});
