import { describe, expect, it } from "vitest";
import { dailyMarked, needsApproval } from "../../src/operator/approvals/decide.js";
import type { ApprovalBudget } from "../../src/operator/approvals/decide.js";

/** The pure "does a person have to approve this?" decision, per payment and per day. */
const b = (name: string, approval: ApprovalBudget["approval"], dayUsed?: bigint | null): ApprovalBudget => ({
  name,
  ...(approval ? { approval } : {}),
  ...(dayUsed !== undefined ? { dayUsed } : {}),
});

describe("needsApproval", () => {
  it.each([
    ["no budget asks", 9_000_000n, [b("a", undefined)], null],
    ["price below `above`", 4_999_999n, [b("a", { above: 5_000_000n, timeoutMs: 60_000 })], null],
    ["price equal to `above` passes", 5_000_000n, [b("a", { above: 5_000_000n, timeoutMs: 60_000 })], null],
    ["price above `above`", 5_000_001n, [b("a", { above: 5_000_000n, timeoutMs: 60_000 })], ["a"]],
    [
      "day below the mark with this payment",
      1_000n,
      [b("a", { dailyMark: 50_000n, timeoutMs: 60_000 }, 49_999n)],
      null,
    ],
    [
      "day reaching the mark exactly passes",
      1_000n,
      [b("a", { dailyMark: 50_000n, timeoutMs: 60_000 }, 50_000n)],
      null,
    ],
    [
      "this payment takes the day past the mark",
      1_000n,
      [b("a", { dailyMark: 50_000n, timeoutMs: 60_000 }, 50_001n)],
      ["a"],
    ],
    [
      "the day was past the mark already",
      1n,
      [b("a", { dailyMark: 50_000n, timeoutMs: 60_000 }, 90_000n)],
      ["a"],
    ],
    [
      "the day's use could not be read: a person decides",
      1n,
      [b("a", { dailyMark: 50_000n, timeoutMs: 60_000 }, null)],
      ["a"],
    ],
    [
      "one of two budgets asks",
      7_000n,
      [b("a", { above: 10_000n, timeoutMs: 60_000 }), b("b", { above: 5_000n, timeoutMs: 60_000 })],
      ["b"],
    ],
    [
      "both ask",
      20_000n,
      [b("a", { above: 10_000n, timeoutMs: 60_000 }), b("b", { above: 5_000n, timeoutMs: 60_000 })],
      ["a", "b"],
    ],
  ] as const)("%s", (_name, price, budgets, asking) => {
    const need = needsApproval(price, budgets);
    if (asking === null) expect(need).toEqual({ kind: "none" });
    else {
      expect(need.kind).toBe("needed");
      if (need.kind === "needed") {
        expect(need.budgets).toEqual(asking);
        expect(need.reasons).toHaveLength(asking.length);
      }
    }
  });

  it("says why in USDC, and waits the shortest time any asking budget sets", () => {
    const need = needsApproval(6_000_000n, [
      b("team", { above: 5_000_000n, dailyMark: 50_000_000n, timeoutMs: 60_000 }, 60_000_000n),
      b("org", { above: 1_000_000n, timeoutMs: 15_000 }),
      b("quiet", { above: 9_000_000n, timeoutMs: 1_000 }),
    ]);
    expect(need).toEqual({
      kind: "needed",
      budgets: ["team", "org"],
      timeoutMs: 15_000,
      reasons: [
        "budget team: the price 0.6 USDC is above its approval mark 0.5 USDC; its spend today with this payment, 6 USDC, passes its daily mark 5 USDC",
        "budget org: the price 0.6 USDC is above its approval mark 0.1 USDC",
      ],
    });
  });

  it("dailyMarked: the day's use is read only when some budget has a daily mark", () => {
    expect(dailyMarked([{ approval: { above: 1n, timeoutMs: 1 } }, {}])).toBe(false);
    expect(dailyMarked([{}, { approval: { dailyMark: 1n, timeoutMs: 1 } }])).toBe(true);
  });
});
