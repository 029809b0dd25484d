import { afterEach, describe, expect, it } from "vitest";
import { tcpRelay } from "../support/tcp-relay.js";
import type { TcpRelay } from "../support/tcp-relay.js";
import {
  PRICE,
  cli,
  eventually,
  hammer,
  ledgerTotals,
  paidCount,
  readyz,
  spendUsed,
  startGateway,
} from "../support/postgres-replicas.js";
import type { Gateway } from "../support/postgres-replicas.js";

/**
 * A gateway's replicas on PostgreSQL when things die: a replica killed with SIGKILL in the
 * middle of paid requests, and the database taken away (a relay in front of it is closed).
 * The emulator's charges are the truth: nothing is lost from the ledger, nothing is paid while
 * the database cannot be used, and the money of interrupted payments stays counted.
 */
let g: Gateway | undefined;
let relay: TcpRelay | undefined;
afterEach(async () => {
  await g?.close();
  g = undefined;
  await relay?.close();
  relay = undefined;
});

describe("a replica killed with SIGKILL mid-load", () => {
  it("loses no ledger row; its open payments are indeterminate, counted once, never freed", async () => {
    g = await startGateway(1000n, 3);
    // Every paid request is charged, then answered 4 s later: at the kill some are in flight.
    g.sb.emulator.addFault({ kind: "slow", stage: "after_settle", delayMs: 4000, remaining: null });
    const urls = g.procs.map((p) => p.url);
    const load = hammer(urls, 60, "kill", 8);
    const gw = g;
    expect(await eventually(() => gw.charged() >= 12n * PRICE, 30_000)).toBe(true);
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
    // By the restarted replica, or by a survivor's sweep, whichever came first.
    expect(gw.procs.map((x) => x.output()).join("")).toMatch(
      /payments interrupted by a stop are now indeterminate/,
    );
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
    expect(await spendUsed(g)).toBe(totals.settled + totals.indeterminate);
    const verify = await cli(g.sb, g.configs[1] as string, "ledger", "verify");
    expect(verify.stdout).toMatch(/^ledger OK/);
    expect(verify.code).toBe(0);

    // `reconcile --resolve` decides them from stoka's usage when the day's numbers leave no
    // doubt (all charged: the usual case here, since the kill lands while answers are held).
    const resolved = await cli(g.sb, g.configs[2] as string, "reconcile", "--resolve", "--json");
    expect(resolved.stderr).toBe("");
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

describe("the database goes away", () => {
  it("refuses to pay (402 budget_unavailable, nothing signed), /readyz 503, and recovers by itself", async () => {
    const password = "pg-relay-password-not-for-logs";
    relay = await tcpRelay(5432);
    const r = relay;
    // The password is ignored by the test server (trust) but is part of the URL the proxy holds.
    g = await startGateway(100n, 1, { urlFor: (db) => db.urlVia(r.port, password) });
    const p = g.procs[0];
    if (!p) throw new Error("no replica");
    expect(paidCount(await hammer([p.url], 3, "before"))).toBe(3);
    expect(g.charged()).toBe(3n * PRICE);

    await relay.stop();
    const refused = await hammer([p.url], 4, "down");
    expect(refused.map((x) => [x.status, x.error])).toEqual(refused.map(() => [402, "budget_unavailable"]));
    for (const x of refused) expect(x.reason).toMatch(/payment database 127\.0\.0\.1:\d+\/stoka_test_\w+/);
    expect(g.charged()).toBe(3n * PRICE);
    const down = await readyz(p.adminUrl);
    expect(down.status).toBe(503);
    expect(down.reasons.join(" ")).toMatch(/payment database/);
    const spendDown = await cli(g.sb, g.configs[0] as string, "spend", "--json");
    expect(spendDown.code).not.toBe(0);
    expect(spendDown.stderr).toMatch(/budget_unavailable|payment database/);

    await relay.start();
    const gw = g;
    expect(await eventually(async () => (await readyz(p.adminUrl)).status === 200, 30_000)).toBe(true);
    expect(paidCount(await hammer([p.url], 2, "after"))).toBe(2);
    expect(gw.charged()).toBe(5n * PRICE);
    expect(await spendUsed(g)).toBe(5n * PRICE);

    // The password never reached a log line, an answer or the CLI's errors.
    for (const text of [p.output(), JSON.stringify(refused), JSON.stringify(down), spendDown.stderr])
      expect(text).not.toContain(password);
  }, 90_000);
});
