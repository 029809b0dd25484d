import { afterEach, describe, expect, it } from "vitest";
import {
  PRICE,
  cli,
  eventually,
  hammer,
  ledgerTotals,
  paidCount,
  readyz,
  startGateway,
  tally,
} from "../support/postgres-replicas.js";
import type { Gateway } from "../support/postgres-replicas.js";

/**
 * A team gateway as docs/operations.md deploys it: three `stoka-proxy start` processes on one
 * PostgreSQL database, one ledger and one set of budgets. The emulator counts what was paid.
 */
let g: Gateway | undefined;
afterEach(async () => {
  await g?.close();
  g = undefined;
});

describe("three replicas on one PostgreSQL database", () => {
  it("200 parallel paid requests against a budget for exactly K: exactly K are paid, the ledger agrees", async () => {
    const K = 37n;
    const gw = await startGateway(K, 3);
    g = gw;
    const results = await hammer(
      g.procs.map((p) => p.url),
      200,
      "k",
      // 200 requests at once, at most 8 in flight per replica (a team's apps, not a flood:
      // the sandbox shares this loaded machine).
      8,
    );
    // Exactly K paid, counted by the emulator; every other request refused before signing.
    // On a starved machine the sandbox itself may fail a request (502: the upstream or the
    // RPC did not answer in time): such a payment is released, and still exactly K are paid.
    const counts = tally(results);
    const sandboxFaults = Object.entries(counts).filter(([k]) => /^502 (upstream_|payment_timeout)/.test(k));
    if (sandboxFaults.length > 0) console.warn("sandbox faults under load:", counts);
    expect(counts["201"]).toBe(Number(K));
    expect(paidCount(results)).toBe(Number(K));
    expect(g.charged()).toBe(K * PRICE);
    const others = Object.entries(counts).filter(([k]) => k !== "201" && k !== "402 budget_exceeded");
    expect(others.filter(([k]) => !/^502 (upstream_|payment_timeout)/.test(k))).toEqual([]);
    expect(others.reduce((s, [, v]) => s + v, 0)).toBeLessThanOrEqual(4);
    // Each replica paid some: the budget really was shared, not split.
    // (Log lines reach stdout in batches, up to 100 ms after the answer.)
    for (const p of g.procs)
      expect(await eventually(() => /"outcome":"settled"/.test(p.output()), 5_000)).toBe(true);

    // The ledger: one chain, its settled sum is what the emulator charged.
    const totals = await ledgerTotals(g.db);
    expect(totals).toMatchObject({ settled: K * PRICE, indeterminate: 0n, open: 0, settledPayments: 37 });

    // The CLI against the postgres config, from any replica's config (read-only: at once).
    const [verify, spend, exported, reconciled] = await Promise.all([
      cli(gw.sb, gw.configs[1] as string, "ledger", "verify"),
      cli(gw.sb, gw.configs[2] as string, "spend", "--json"),
      cli(gw.sb, gw.configs[0] as string, "ledger", "export", "--format", "ndjson"),
      cli(gw.sb, gw.configs[0] as string, "reconcile", "--json"),
    ]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/^ledger OK: \d+ rows, head [0-9a-f]{64}\n$/);
    const spent = JSON.parse(spend.stdout) as {
      budgets: { budget: string; period: string; used: string; reserved: string }[];
      routes: { route: string; today: string; indeterminate: string }[];
    };
    expect(spent.budgets).toEqual([
      {
        budget: "shared",
        period: "day",
        used: (K * PRICE).toString(),
        limit: (K * PRICE).toString(),
        reserved: "0",
      },
    ]);
    expect(spent.routes).toEqual([
      expect.objectContaining({ route: "store", today: (K * PRICE).toString(), indeterminate: "0" }),
    ]);
    expect(exported.code).toBe(0);
    const rows = exported.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { seq: number; state: string; amount: string });
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
    expect(rows.filter((r) => r.state === "settled").reduce((s, r) => s + BigInt(r.amount), 0n)).toBe(
      K * PRICE,
    );
    expect(reconciled.stderr).toBe("");
    expect(reconciled.code).toBe(0);
    const days = JSON.parse(reconciled.stdout) as { status: string; ledger_settled: string }[];
    expect(days.find((d) => d.ledger_settled !== "0")).toMatchObject({
      status: "match",
      ledger_settled: (K * PRICE).toString(),
    });

    // /readyz and the gauges: every replica reads the same shared budget.
    for (const p of g.procs) {
      expect((await readyz(p.adminUrl)).status).toBe(200);
      const metrics = await (await fetch(`${p.adminUrl}/metrics`)).text();
      expect(metrics).toContain(`stoka_proxy_budget_spent_atomic{budget="shared",period="day"} ${K * PRICE}`);
      expect(metrics).toMatch(/^stoka_proxy_indeterminate_payments 0$/m);
    }
  }, 120_000);
});
