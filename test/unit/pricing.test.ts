import { describe, expect, it } from "vitest";
import { DAY_SECONDS, defaultPricing, readPrice, resolveTtl, writePrice } from "../../src/sandbox/pricing.js";

const p = defaultPricing();

describe("stoka pricing (docs/wire-protocol.md worked values)", () => {
  it.each([
    ["store 42 B for 30 d", 42, 30, 1400n],
    ["store 1025 B for 30 d", 1025, 30, 1800n],
    ["store 1 MiB for 30 d", 1024 * 1024, 30, 410_600n],
    ["store 0 B", 0, 30, 1000n],
    ["store 1 KiB for 1 d", 1024, 1, 1110n],
  ])("%s", (_name, bytes, days, price) => {
    expect(writePrice(bytes, days, p.store)).toBe(price);
  });

  it.each([
    ["retrieve 42 B", 42, 1100n],
    ["retrieve 10 KiB", 10 * 1024, 2000n],
    ["retrieve 10 KiB + 1 B", 10 * 1024 + 1, 2100n],
  ])("%s", (_name, bytes, price) => {
    expect(readPrice(bytes, p.retrieve)).toBe(price);
  });
});

describe("TTL clamping", () => {
  it.each([
    ["default is 30 days", undefined, 30 * DAY_SECONDS, 30],
    ["below 1 hour is raised to 1 hour, billed as 1 day", 60, 3600, 1],
    ["above 90 days is lowered to 90 days", 400 * DAY_SECONDS, 90 * DAY_SECONDS, 90],
    ["a day and a second bills two days", DAY_SECONDS + 1, DAY_SECONDS + 1, 2],
  ])("%s", (_name, asked, seconds, days) => {
    expect(resolveTtl(asked, p.ttl)).toEqual({ seconds, days });
  });

  it("max TTL is configurable (one stoka page says 365 days)", () => {
    expect(resolveTtl(400 * DAY_SECONDS, defaultPricing(365 * DAY_SECONDS).ttl).days).toBe(365);
  });
});
