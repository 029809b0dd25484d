import { afterEach, describe, expect, it } from "vitest";
import {
  PRICE,
  cli,
  eventually,
  hammer,
  ledgerTotals,
  paidCount,
  spendUsed,
  startGateway,
} from "../support/postgres-replicas.js";
import type { Gateway } from "../support/postgres-replicas.js";

/**
 * A gateway replica on PostgreSQL killed with SIGKILL in the middle of paid requests. The
 * emulator's charges are the truth: no ledger row is lost, and the money of the killed
 * replica's open payments stays counted (indeterminate), never freed, never counted twice.
 */
let g: Gateway | undefined;
afterEach(async () => {
  await g?.close();
  g = undefined;
});

describe("a replica killed with SIGKILL mid-load", () => {
  it("loses no ledger row; its open payments are indeterminate, counted once, never freed", async () => {
    g = await startGateway(1000n, 3);
    // Every paid request is charged, then answered 4 s later: at the kill some are in flight.
    g.sb.emulator.addFault({ kind: "slow", stage: "after_settle", delayMs: 3000, remaining: null });
    const urls = g.procs.map((p) => p.url);
    const load = hammer(urls, 36, "kill", 6);
    const gw = g;
    expect(await eventually(() => gw.charged() >= 8n * PRICE, 30_000)).toBe(true);
    const victim = g.procs[0];
    const killed = new Promise((resolve) => victim?.child.once("exit", resolve));
    victim?.child.kill("SIGKILL");
    await killed;
    g.sb.emulator.switches.faults.length = 0;
    const results = await load;

    // Restarted, the replica finds its own payments interrupted (its writer lock was freed
    // with its connections) and marks them indeterminate.
    const back = await g.restart(0);
    expect(await eventually(async () => (await ledgerTotals(gw.db)).open === 0)).toBe(true);
    // By the restarted replica, or by a survivor's sweep, whichever came first (log lines reach
    // stdout in batches, up to 100 ms later: docs/metrics.md, Logs).
    const said = () =>
      /payments interrupted by the last stop after their header was sent are now indeterminate/.test(
        gw.procs.map((x) => x.output()).join(""),
      );
    expect(await eventually(said, 5_000)).toBe(true);
    void back;

    const totals = await ledgerTotals(g.db);
    // Every request answered 201 has its settled row; the killed replica's answers never left.
    expect(totals.settledPayments).toBe(paidCount(results));
    expect(totals.indeterminatePayments).toBeGreaterThan(0);
    expect(results.filter((r) => r.status === 0).length).toBeGreaterThanOrEqual(totals.indeterminatePayments);
    // Never doubled, never lost: what the emulator charged is between what the ledger knows
    // settled and that plus what it does not know.
    expect(g.charged()).toBeGreaterThanOrEqual(totals.settled);
    expect(g.charged()).toBeLessThanOrEqual(totals.settled + totals.indeterminate);
    // The budget counts exactly what the ledger counts: settled and indeterminate (not freed).
    const [used, verify] = await Promise.all([
      spendUsed(g),
      cli(g.sb, g.configs[1] as string, "ledger", "verify"),
    ]);
    expect(used).toBe(totals.settled + totals.indeterminate);
    expect(verify.stdout).toMatch(/^ledger OK/);
    expect(verify.code).toBe(0);

    // `reconcile --resolve` decides them from stoka's usage when the day's numbers leave no
    // doubt (all charged: the usual case here, since the kill lands while answers are held).
    const resolved = await cli(g.sb, g.configs[2] as string, "reconcile", "--resolve", "--json");
    expect(resolved.stderr).not.toMatch(/"level":(50|60)/);
    const today = new Date().toISOString().slice(0, 10);
    const day = (JSON.parse(resolved.stdout) as { date: string; status: string; upstream: string }[]).find(
      (d) => d.date === today,
    );
    expect(day?.upstream).toBe(g.charged().toString());
    const after = await ledgerTotals(g.db);
    if (day?.status === "all_indeterminate_charged") {
      expect(after.indeterminatePayments).toBe(0);
      expect(after.settled).toBe(g.charged());
    } else {
      expect(day?.status).toBe("mismatch");
      expect(after).toEqual(totals);
    }
    expect(await spendUsed(g)).toBe(after.settled + after.indeterminate);
  }, 120_000);
});
