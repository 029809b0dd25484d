import { describe, expect, it } from "vitest";
import { formatUsdc, parseAmount } from "../../src/stellar/amount.js";

describe("amounts are bigint atomic units, 7 decimals", () => {
  it.each([
    ["1400", 1400n],
    [1400, 1400n],
    ["0.25 USDC", 2_500_000n],
    ["1 USDC", 10_000_000n],
    ["0.0000001 usdc", 1n],
    ["12.5 USDC", 125_000_000n],
    ["0", 0n],
  ])("%s → %s", (input, atomic) => {
    expect(parseAmount(input)).toBe(atomic);
  });

  it.each([["0.00000001 USDC"], ["-1"], ["1.5"], ["abc"], [1.5], ["01"], ["1e3"]])("refuses %s", (input) => {
    expect(() => parseAmount(input)).toThrow(RangeError);
  });

  it("formats back", () => {
    expect(formatUsdc(2_500_000n)).toBe("0.25 USDC");
    expect(formatUsdc(10_000_000n)).toBe("1 USDC");
    expect(formatUsdc(1n)).toBe("0.0000001 USDC");
  });
});
