import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { runCrashTest } from "../../bench/crash/run.js";

const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * `npm run crash-test`, shortened: the kill -9 scenario and the foreign-asset payee with a
 * small budget, through real `stoka-proxy start` processes (from the sources, so no build is
 * needed), so the script itself is proven to run and to judge.
 */
describe("the crash test, two scenarios", () => {
  it("kill -9 mid-load and a payee asking for another asset: nothing over the limit, the ledger holds", async () => {
    const run = await runCrashTest({
      k: 4,
      requests: 12,
      replicas: 1,
      cli: ["--import", "tsx", join(ROOT, "src/cli/main.ts")],
      scenarios: ["kill-9", "other-asset"],
    });
    expect(run.details).not.toMatch(/FAIL/);
    expect(run.ok).toBe(true);
    const [kill, asset] = run.results;
    expect(kill?.id).toBe("kill-9");
    expect(kill?.accounting.overLimit).toBe(0n);
    expect(kill?.accounting.charges).toBeGreaterThan(0);
    expect(kill?.accounting.charged).toBeLessThanOrEqual(kill?.limit ?? 0n);
    expect(kill?.accounting.ledgerProblems).toEqual([]);
    expect(asset?.accounting.signed).toBe(0);
    expect(asset?.accounting.charged).toBe(0n);
    expect(run.table.split("\n")[0]).toMatch(
      /scenario .*requests .*signed .*charged upstream .*budget limit .*over the limit .*ledger = charges .*time/,
    );
    expect(run.table).toMatch(/kill -9 mid-load/);
  }, 120_000);
});
