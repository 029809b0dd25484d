import { startSandbox } from "../../src/sandbox/sandbox.js";
import { account } from "./accounting.js";
import { PRICE } from "./load.js";
import { crashDetails, crashTable } from "./report.js";
import { SCENARIOS } from "./scenarios.js";
import type { CrashOptions, ScenarioResult } from "./scenarios.js";

/**
 * Runs the chosen scenarios one after the other against one sandbox (a fresh wallet each),
 * and prints the table. A scenario that cannot run (PostgreSQL down, a proxy that will not
 * start) is a failed row with the reason, never a skipped one.
 */
export interface CrashRun {
  results: ScenarioResult[];
  ok: boolean;
  table: string;
  details: string;
}

export async function runCrashTest(
  options: Omit<CrashOptions, "sandbox"> & { scenarios?: readonly string[]; log?: (line: string) => void },
): Promise<CrashRun> {
  const chosen = options.scenarios ? SCENARIOS.filter((s) => options.scenarios?.includes(s.id)) : SCENARIOS;
  const unknown = (options.scenarios ?? []).filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length > 0)
    throw new Error(
      `unknown scenario ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.id).join(", ")}`,
    );
  const sandbox = await startSandbox();
  const results: ScenarioResult[] = [];
  try {
    for (const s of chosen) {
      const started = Date.now();
      let r: ScenarioResult;
      try {
        r = await s.run({ ...options, sandbox });
      } catch (e) {
        const limit = BigInt(options.k) * PRICE;
        r = {
          id: s.id,
          title: s.title,
          requests: 0,
          limit,
          accounting: account([], [], limit),
          problems: [`the scenario could not run: ${firstLines((e as Error).message)}`],
          notes: [],
          ms: Date.now() - started,
        };
      }
      results.push(r);
      options.log?.(`${r.problems.length === 0 ? "ok  " : "FAIL"} ${s.id} (${(r.ms / 1000).toFixed(1)} s)`);
    }
  } finally {
    await sandbox.close();
  }
  return {
    results,
    ok: results.every((r) => r.problems.length === 0),
    table: crashTable(results, options.replicas),
    details: crashDetails(results),
  };
}

const firstLines = (text: string) => text.split("\n").slice(0, 6).join(" / ");
