import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";

/** `approval:` on a budget, through the real loader: amounts, the default wait, the refusals. */
const dir = mkdtempSync(join(tmpdir(), "stoka-approval-config-"));
let n = 0;
function load(budget: string, extra = ""): ReturnType<typeof loadConfig> {
  const p = join(dir, `c${n++}.yaml`);
  writeFileSync(p, `${extra}budgets:\n  - name: team\n${budget}`);
  return loadConfig({}, { config: p });
}
function refusal(budget: string, extra = ""): string {
  try {
    load(budget, extra);
  } catch (e) {
    return `${(e as Error).message} | ${(e as { hint?: string }).hint ?? ""}`;
  }
  return "loaded";
}

describe("budgets[].approval", () => {
  it("reads amounts in USDC or atomic units, and waits 60 s unless told", () => {
    const c = load(
      `    limits: { day: "20 USDC" }\n    approval: { above: "0.50 USDC", daily_mark: 50000000 }\n`,
    );
    expect(c.budgets[0]?.approval).toEqual({ above: 5_000_000n, dailyMark: 50_000_000n, timeoutMs: 60_000 });
    const short = load(
      `    per_request_max: "1 USDC"\n    approval: { above: 1000, timeout_seconds: 2.5 }\n`,
    );
    expect(short.budgets[0]?.approval).toEqual({ above: 1_000n, timeoutMs: 2_500 });
    expect(load(`    limits: { day: "1 USDC" }\n`).budgets[0]?.approval).toBeUndefined();
  });

  it.each([
    [
      "neither mark",
      `    limits: { day: "1 USDC" }\n    approval: { timeout_seconds: 5 }\n`,
      /names neither above nor daily_mark/,
    ],
    [
      "a daily mark without a day limit",
      `    limits: { month: "9 USDC" }\n    approval: { daily_mark: "1 USDC" }\n`,
      /approval\.daily_mark: needs a day limit/,
    ],
    [
      "a bare decimal",
      `    limits: { day: "1 USDC" }\n    approval: { above: 0.5 }\n`,
      /budgets\.0\.approval\.above/,
    ],
    ["an unknown field", `    limits: { day: "1 USDC" }\n    approval: { above: 1000, over: 5 }\n`, /over/],
    [
      "a wait past an hour",
      `    limits: { day: "1 USDC" }\n    approval: { above: 1000, timeout_seconds: 7200 }\n`,
      /timeout_seconds/,
    ],
  ])("refuses %s", (_name, budget, why) => {
    expect(refusal(budget)).toMatch(why);
  });

  it("refuses a wait that would outlast the reservation's lease", () => {
    const why = refusal(
      `    limits: { day: "1 USDC" }\n    approval: { above: 1000, timeout_seconds: 120 }\n`,
      "lease_seconds: 100\n",
    );
    expect(why).toMatch(/approval\.timeout_seconds: 120 s is not shorter than lease_seconds \(100 s\)/);
    expect(why).toMatch(/raise lease_seconds/);
  });
});
