import { describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import type { LaterState } from "../../src/store/payment-store.js";
import {
  BUDGET_STATES,
  budgetStepFor,
  firstDenial,
  limitChecks,
  moveBudget,
  resolveMove,
} from "../../src/store/payment-transitions.js";
import type { BudgetState, BudgetStep } from "../../src/store/payment-transitions.js";

describe("the budget step of each ledger state", () => {
  it.each([
    ["sent", "none"],
    ["settled", "commit"],
    ["rejected", "release"],
    ["failed", "release"],
    ["indeterminate", "hold"],
  ] as [LaterState, BudgetStep][])("%s → %s", (state, step) => {
    expect(budgetStepFor(state)).toBe(step);
  });
});

describe("how a step moves a reservation", () => {
  const table: [BudgetState, BudgetStep, ReturnType<typeof moveBudget>][] = [
    ["reserved", "none", null],
    ["reserved", "commit", { to: "spent", frees: false }],
    ["reserved", "release", { to: "released", frees: true }],
    ["reserved", "hold", { to: "indeterminate", frees: false }],
    // A late answer after a lease ran out or an interruption still applies.
    ["indeterminate", "commit", { to: "spent", frees: false }],
    ["indeterminate", "release", { to: "released", frees: true }],
    ["indeterminate", "hold", null],
    ["indeterminate", "none", null],
    // Final: nothing moves again, so nothing is given back twice.
    ["spent", "commit", null],
    ["spent", "release", null],
    ["spent", "hold", null],
    ["released", "commit", null],
    ["released", "release", null],
    ["released", "hold", null],
  ];
  it.each(table)("%s + %s", (from, step, move) => {
    expect(moveBudget(from, step)).toEqual(move);
  });

  it("every (state, step) pair is in the table", () => {
    const steps: BudgetStep[] = ["none", "commit", "release", "hold"];
    const covered = new Set(table.map(([f, s]) => `${f}/${s}`));
    const missing = BUDGET_STATES.flatMap((f) => steps.map((s) => `${f}/${s}`)).filter(
      (k) => !covered.has(k) && !k.startsWith("spent/none") && !k.startsWith("released/none"),
    );
    expect(missing).toEqual([]);
    expect(moveBudget("spent", "none")).toBeNull();
    expect(moveBudget("released", "none")).toBeNull();
  });

  it.each([
    ["indeterminate", true, { to: "spent", frees: false }],
    ["indeterminate", false, { to: "released", frees: true }],
    ["reserved", false, { to: "released", frees: true }],
    ["spent", false, null],
    ["released", true, null],
  ] as [BudgetState, boolean, ReturnType<typeof resolveMove>][])(
    "resolving %s (charged %s)",
    (from, charged, move) => {
      expect(resolveMove(from, charged)).toEqual(move);
    },
  );
});

describe("the limits a reservation checks", () => {
  const at = Date.UTC(2025, 2, 31, 22, 15, 30);
  const budgets: Budget[] = [
    {
      name: "team",
      match: {},
      limits: [
        { period: { kind: "calendar", unit: "hour" }, amount: 10n },
        { period: { kind: "calendar", unit: "week" }, amount: 50n },
      ],
    },
    { name: "app", match: {}, limits: [{ period: { kind: "rolling", seconds: 90 }, amount: 5n }] },
    { name: "tag", match: {}, limits: [] },
  ];

  it("one check per limit, in config order, with its bucket or window", () => {
    expect(limitChecks(budgets, at)).toEqual([
      {
        budget: "team",
        period: "hour",
        limit: 10n,
        key: "team:hour",
        calendar: true,
        bucket: Date.UTC(2025, 2, 31, 22),
        sinceMs: 0,
      },
      {
        budget: "team",
        period: "week",
        limit: 50n,
        key: "team:week",
        calendar: true,
        bucket: Date.UTC(2025, 2, 31),
        sinceMs: 0,
      },
      {
        budget: "app",
        period: "rolling_90s",
        limit: 5n,
        key: "app:rolling_90s",
        calendar: false,
        bucket: 0,
        sinceMs: at - 90_000,
      },
    ]);
  });

  it("the first limit the price does not fit is the denial; exactly full fits", () => {
    const checks = limitChecks(budgets, at);
    expect(firstDenial(checks, [7n, 45n, 2n], 3n)).toBeNull();
    expect(firstDenial(checks, [8n, 48n, 3n], 3n)).toEqual({
      budget: "team",
      period: "hour",
      limit: 10n,
      spent: 8n,
      price: 3n,
    });
    expect(firstDenial(checks, [0n, 0n, 3n], 3n)).toEqual({
      budget: "app",
      period: "rolling_90s",
      limit: 5n,
      spent: 3n,
      price: 3n,
    });
    expect(firstDenial([], [], 10n ** 30n)).toBeNull();
  });
});
