import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseHttpDate, parseRetryAfter } from "../../../src/resilience/retry-after.js";

/** Property runs stop after a time budget (the machine is shared), never on a timing assertion. */
const BUDGET = { numRuns: 2000, interruptAfterTimeLimit: 3000 };
const CAP = 600_000;
const at = (iso: string) => Date.parse(iso);
const NOW = at("1994-11-06T08:49:30Z");

describe("Retry-After (RFC 9110 §10.2.3): table", () => {
  it.each([
    ["delay-seconds", "120", 120_000, false],
    ["zero", "0", 0, false],
    ["optional whitespace around the value", "  5 ", 5_000, false],
    ["leading zeros", "007", 7_000, false],
    ["exactly the cap", "600", 600_000, false],
    ["one second past the cap", "601", CAP, true],
    ["a number too long to be exact", "99999999999999999999999999", CAP, true],
    ["leading zeros before a large number", "0000000000000000000000000601", CAP, true],
    ["IMF-fixdate 7 s ahead", "Sun, 06 Nov 1994 08:49:37 GMT", 7_000, false],
    ["IMF-fixdate in the past", "Sun, 06 Nov 1994 08:49:00 GMT", 0, false],
    ["IMF-fixdate a day ahead", "Mon, 07 Nov 1994 08:49:30 GMT", CAP, true],
    ["RFC 850 date", "Sunday, 06-Nov-94 08:49:37 GMT", 7_000, false],
    ["asctime date (day padded with a space)", "Sun Nov  6 08:49:37 1994", 7_000, false],
    ["a leap second", "Sun, 06 Nov 1994 08:49:60 GMT", 30_000, false],
  ] as const)("%s", (_name, value, delayMs, exceedsCap) => {
    expect(parseRetryAfter(value, NOW, CAP)).toEqual({ delayMs, exceedsCap });
  });

  it.each([
    ["empty", ""],
    ["only spaces", "   "],
    ["a fraction", "1.5"],
    ["negative", "-1"],
    ["a plus sign", "+5"],
    ["a unit", "5s"],
    ["a word", "soon"],
    ["two values", "5, 5"],
    ["lowercase date (HTTP-date is case-sensitive)", "sun, 06 nov 1994 08:49:37 gmt"],
    ["UTC instead of GMT", "Sun, 06 Nov 1994 08:49:37 UTC"],
    ["a day that does not exist", "Thu, 31 Feb 1994 08:49:37 GMT"],
    ["hour 25", "Sun, 06 Nov 1994 25:49:37 GMT"],
    ["minute 60", "Sun, 06 Nov 1994 08:60:37 GMT"],
    ["an unknown day name", "Dim, 06 Nov 1994 08:49:37 GMT"],
    ["an unknown month", "Sun, 06 Nom 1994 08:49:37 GMT"],
    ["ISO 8601", "1994-11-06T08:49:37Z"],
    ["a one-digit IMF day", "Sun, 6 Nov 1994 08:49:37 GMT"],
    ["an RFC 850 short day name", "Sun, 06-Nov-94 08:49:37 GMT"],
    ["trailing garbage", "Sun, 06 Nov 1994 08:49:37 GMT x"],
    ["a hex number", "0x10"],
  ])("garbage is ignored: %s", (_name, value) => {
    expect(parseRetryAfter(value, NOW, CAP)).toBeNull();
  });

  it("an absent header is no Retry-After", () => {
    expect(parseRetryAfter(undefined, NOW, CAP)).toBeNull();
  });

  it("a repeated header counts only when its copies agree", () => {
    expect(parseRetryAfter(["5", " 5"], NOW, CAP)).toEqual({ delayMs: 5_000, exceedsCap: false });
    expect(parseRetryAfter(["5", "6"], NOW, CAP)).toBeNull();
    expect(parseRetryAfter([], NOW, CAP)).toBeNull();
  });

  it.each([
    ["a year that is not two digits", "Friday, 06-Nov-2026 08:49:37 GMT", null],
    ["26 read in 2026 is 2026", "Friday, 06-Nov-26 08:49:37 GMT", at("2026-11-06T08:49:37Z")],
    ["80 read in 2026 is 1980, not 2080", "Thursday, 06-Nov-80 08:49:37 GMT", at("1980-11-06T08:49:37Z")],
    [
      "76 read in 2026 is 2076 (exactly 50 years ahead)",
      "Friday, 06-Nov-76 08:49:37 GMT",
      at("2076-11-06T08:49:37Z"),
    ],
  ])("RFC 850 two-digit years: %s", (_name, value, expected) => {
    expect(parseHttpDate(value, at("2026-06-01T00:00:00Z"))).toBe(expected);
  });
});

describe("Retry-After: properties", () => {
  it("never throws, and any answer lies within [0, cap]", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 64 }), fc.integer({ min: 0, max: 4e12 }), (s, now) => {
        const r = parseRetryAfter(s, now, CAP);
        if (r) expect(r.delayMs >= 0 && r.delayMs <= CAP).toBe(true);
      }),
      BUDGET,
    );
  });

  it("delay-seconds within the cap read exactly", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: CAP / 1000 }), (n) => {
        expect(parseRetryAfter(String(n), 0, CAP)).toEqual({ delayMs: n * 1000, exceedsCap: false });
      }),
      BUDGET,
    );
  });

  it("a year below 100 is that year, not 19xx", () => {
    expect(parseHttpDate("Sat, 01 Jan 0050 00:00:00 GMT", 0)).toBe(at("0050-01-01T00:00:00Z"));
  });

  it("an IMF-fixdate written by toUTCString reads back to the second", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253402300799 }), (seconds) => {
        const ms = seconds * 1000;
        expect(parseHttpDate(new Date(ms).toUTCString(), 0)).toBe(ms);
      }),
      BUDGET,
    );
  });
});
