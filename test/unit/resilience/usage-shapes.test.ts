import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { describeShape, readUsage, usageFromValue } from "../../../src/resilience/usage-shapes.js";

const BUDGET = { numRuns: 2000, interruptAfterTimeLimit: 3000 };
const TX_A = "a".repeat(64);
const TX_B = "B".repeat(64);
const day = (date: string, spent: bigint) => ({ date, spentAtomic: spent });

describe("usage shapes that read", () => {
  it.each([
    [
      "the emulator's answer: days[] with date and spent_atomic",
      {
        pubkey: "GABC",
        unit: "usdc_atomic",
        days: [
          { date: "2026-11-28", spent_atomic: "1400", requests: 1 },
          { date: "2026-11-27", spent_atomic: "0", requests: 0 },
        ],
        total_atomic: "1400",
      },
      [day("2026-11-28", 1400n), day("2026-11-27", 0n)],
      "days[] of days",
    ],
    [
      "the answer that crashed reconcile: {days: 7, series: [...]}",
      { days: 7, series: [{ day: "2026-11-28", charged_atomic: 1400 }] },
      [day("2026-11-28", 1400n)],
      "series[] of days",
    ],
    [
      "amount as a string",
      { series: [{ date: "2026-11-28", amount: "410600" }] },
      [day("2026-11-28", 410_600n)],
      "series[] of days",
    ],
    [
      "amount_atomic",
      { days: [{ date: "2026-11-28", amount_atomic: 5 }] },
      [day("2026-11-28", 5n)],
      "days[] of days",
    ],
    [
      "agreeing amounts in two keys",
      { days: [{ date: "2026-11-28", spent_atomic: "5", amount: 5 }] },
      [day("2026-11-28", 5n)],
      "days[] of days",
    ],
    [
      "agreeing date and day",
      { days: [{ date: "2026-11-28", day: "2026-11-28", amount: 5 }] },
      [day("2026-11-28", 5n)],
      "days[] of days",
    ],
    [
      "a day as an ISO time at midnight UTC",
      { series: [{ day: "2026-11-28T00:00:00Z", amount: 1 }] },
      [day("2026-11-28", 1n)],
      "series[] of days",
    ],
    [
      "midnight with +00:00 and millis",
      { series: [{ day: "2026-11-28T00:00:00.000+00:00", amount: 1 }] },
      [day("2026-11-28", 1n)],
      "series[] of days",
    ],
    [
      "a top-level list",
      [{ date: "2026-11-28", spent_atomic: "3" }],
      [day("2026-11-28", 3n)],
      "a top-level list of days",
    ],
    [
      "[date, amount] pairs",
      {
        series: [
          ["2026-11-28", "3"],
          ["2026-11-27", 0],
        ],
      },
      [day("2026-11-28", 3n), day("2026-11-27", 0n)],
      "series[] of days",
    ],
    [
      "a map from day to amount",
      { days: { "2026-11-28": "3", "2026-11-27": 2 } },
      [day("2026-11-28", 3n), day("2026-11-27", 2n)],
      "days{} of days",
    ],
    [
      "one level down",
      { usage: { days: 7, series: [{ day: "2026-11-28", amount: 9 }] } },
      [day("2026-11-28", 9n)],
      "usage.series[] of days",
    ],
    [
      "inside a data envelope",
      { data: { days: [{ date: "2026-11-28", spent_atomic: 9 }] } },
      [day("2026-11-28", 9n)],
      "data.days[] of days",
    ],
    [
      "daily",
      { daily: [{ date: "2026-11-28", spent_atomic: 9 }] },
      [day("2026-11-28", 9n)],
      "daily[] of days",
    ],
    ["an empty list", { days: [] }, [], "days[] of days"],
    ["an atomic unit named otherwise", { unit: "atomic", days: [] }, [], "days[] of days"],
    [
      "metadata objects beside the list are ignored",
      { days: [], data: { pubkey: "G" } },
      [],
      "days[] of days",
    ],
  ])("%s", (_name, value, days, shape) => {
    const r = usageFromValue(value);
    expect(r).toEqual({ ok: true, usage: { days }, shape });
  });

  it("payments listed at the top level, with their hash, amount and time", () => {
    const r = usageFromValue({
      days: [{ date: "2026-11-28", spent_atomic: "2800" }],
      payments: [
        { tx: TX_A, amount: "1400", at: "2026-11-28T10:00:00Z" },
        { tx_hash: TX_B, charged_atomic: 1400, date: "2026-11-28" },
      ],
    });
    expect(r).toEqual({
      ok: true,
      shape: "days[] of days",
      usage: {
        days: [day("2026-11-28", 2800n)],
        payments: [
          { tx: TX_A, amountAtomic: 1400n, at: Date.parse("2026-11-28T10:00:00Z"), date: "2026-11-28" },
          { tx: TX_B.toLowerCase(), amountAtomic: 1400n, date: "2026-11-28" },
        ],
      },
    });
  });

  it("charges listed inside each day take the day's date; a charge without a hash is kept", () => {
    const r = usageFromValue({
      series: [
        { day: "2026-11-28", amount: 1400, charges: [{ transaction: TX_A, amount: 1000 }, { amount: 400 }] },
      ],
    });
    expect(r.ok && r.usage.payments).toEqual([
      { tx: TX_A, amountAtomic: 1000n, date: "2026-11-28" },
      { tx: null, amountAtomic: 400n, date: "2026-11-28" },
    ]);
  });

  it("payments only", () => {
    const r = usageFromValue({ payments: [{ hash: TX_A, amount: 1 }] });
    expect(r).toEqual({
      ok: true,
      shape: "payments only",
      usage: { days: [], payments: [{ tx: TX_A, amountAtomic: 1n }] },
    });
  });
});

describe("usage shapes that fail, with a message naming what came", () => {
  it.each([
    ["only the window", { days: 7 }, "no list of days found; got an object with keys: days (number)"],
    ["an empty object", {}, "no list of days found; got an empty object"],
    [
      "a total only",
      { pubkey: "GABC", total: "5" },
      "no list of days found; got an object with keys: pubkey (string), total (string)",
    ],
    ["a string", "hello", "the answer is a string, not an object or a list"],
    ["null", null, "the answer is a null, not an object or a list"],
    [
      "two lists",
      { days: [], series: [] },
      "the answer has several lists of days (days, series); which one counts is ambiguous",
    ],
    [
      "a day without a date",
      { series: [{ amount: 1, requests: 2 }] },
      "series[0] has no date or day; it is an object with keys: amount (number), requests (number)",
    ],
    [
      "a day without an amount (never read as 0)",
      { days: [{ date: "2026-11-28", requests: 0 }] },
      /days\[0\] has no amount/,
    ],
    [
      "a USDC decimal amount",
      { days: [{ date: "2026-11-28", amount: "0.0014" }] },
      /not a whole number of atomic units \(a string\)/,
    ],
    ["a fractional number", { days: [{ date: "2026-11-28", amount: 1.5 }] }, /\(a fraction\)/],
    ["a negative amount", { days: [{ date: "2026-11-28", amount: -1 }] }, /integer too large or negative/],
    [
      "an unsafe integer",
      { days: [{ date: "2026-11-28", amount: 2 ** 60 }] },
      /integer too large or negative/,
    ],
    [
      "disagreeing amounts",
      { days: [{ date: "2026-11-28", spent_atomic: "1", amount: "2" }] },
      /amounts that disagree \(spent_atomic, amount\)/,
    ],
    [
      "disagreeing date and day",
      { days: [{ date: "2026-11-28", day: "2026-11-27", amount: 1 }] },
      /a date and a day that disagree/,
    ],
    [
      "a time that is not midnight",
      { series: [{ day: "2026-11-28T10:00:00Z", amount: 1 }] },
      /not a UTC day/,
    ],
    ["a date that does not exist", { days: [{ date: "2026-02-30", amount: 1 }] }, /not a UTC day/],
    ["a numeric day index", { days: [{ day: 3, amount: 1 }] }, /not a UTC day .* but a number/],
    [
      "a day listed twice",
      {
        days: [
          { date: "2026-11-28", amount: 1 },
          { date: "2026-11-28", amount: 1 },
        ],
      },
      "the answer lists 2026-11-28 more than once",
    ],
    [
      "a unit that is not atomic",
      { unit: "usdc", days: [] },
      'the answer\'s unit is "usdc", not atomic units; amounts cannot be read safely',
    ],
    [
      "a pair of three",
      { series: [["2026-11-28", 1, 2]] },
      /series\[0\] is a list of 3, not a \[date, amount\] pair/,
    ],
    ["a payment without an amount", { days: [], payments: [{ tx: TX_A }] }, /payments\[0\] has no amount/],
    [
      "payments that are not a list",
      { days: [], charges: { a: 1 } },
      /charges is an object with keys: a \(number\), not a list of payments/,
    ],
  ])("%s", (_name, value, message) => {
    const r = usageFromValue(value);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(message);
  });

  it("never repeats the answer's values, only names and types", () => {
    const secret = "S" + "A".repeat(55);
    const r = usageFromValue({ note: secret, [`k${secret}`]: 1, days: [{ date: secret, amount: secret }] });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).not.toContain(secret);
      expect(r.reason).toMatch(/a string of 56 characters/);
    }
    expect(describeShape({ [`weird key ${secret}`]: 1 })).toBe(
      "an object with keys: <a key not shown> (number)",
    );
  });

  it("bounded input", () => {
    expect(readUsage("not json")).toEqual({ ok: false, reason: "the usage answer is unreadable: not JSON" });
    expect(readUsage("[".repeat(20) + "]".repeat(20))).toEqual({
      ok: false,
      reason: "the usage answer is unreadable: JSON nests deeper than 8 levels",
    });
    expect(
      readUsage(JSON.stringify({ days: [], pad: "x".repeat(100) }), { maxBytes: 64, maxDepth: 8 }),
    ).toEqual({
      ok: false,
      reason: "the usage answer is unreadable: JSON is larger than 64 bytes",
    });
    const many = { days: Array.from({ length: 1001 }, (_, i) => ({ date: "2026-01-01", amount: i })) };
    expect(usageFromValue(many)).toEqual({ ok: false, reason: "days lists more than 1000 days" });
  });

  it("describes lists and objects briefly", () => {
    expect(describeShape([1, "a", null])).toBe("a list of 3 (number, string, null)");
    const big = Object.fromEntries(Array.from({ length: 14 }, (_, i) => [`k${i}`, i]));
    expect(describeShape(big)).toMatch(/k11 \(number\), and 2 more$/);
  });
});

describe("usage shapes: properties", () => {
  it("never throws on any JSON; what it reads is whole and not negative", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (v) => {
        const r = readUsage(JSON.stringify(v) ?? "null");
        if (r.ok) {
          for (const d of r.usage.days)
            expect(d.spentAtomic >= 0n && /^\d{4}-\d{2}-\d{2}$/.test(d.date)).toBe(true);
          for (const p of r.usage.payments ?? []) expect(p.amountAtomic >= 0n).toBe(true);
        } else expect(r.reason.length).toBeGreaterThan(0);
      }),
      BUDGET,
    );
  });

  it("any list of distinct days with whole amounts reads back, in every day shape", () => {
    const dayArb = fc.uniqueArray(fc.integer({ min: 0, max: 20_000 }), { maxLength: 30 }).chain((offsets) =>
      fc.tuple(
        fc.constant(
          offsets.map((o) => new Date(Date.UTC(2020, 0, 1) + o * 86_400_000).toISOString().slice(0, 10)),
        ),
        fc.array(fc.bigInt({ min: 0n, max: 10n ** 20n }), {
          minLength: offsets.length,
          maxLength: offsets.length,
        }),
      ),
    );
    fc.assert(
      fc.property(
        dayArb,
        fc.constantFrom("days", "series"),
        fc.constantFrom("date", "day"),
        fc.constantFrom("spent_atomic", "charged_atomic", "amount"),
        ([dates, amounts], listKey, dateKey, amountKey) => {
          const list = dates.map((d, i) => ({
            [dateKey]: d,
            [amountKey]: (amounts[i] as bigint).toString(),
          }));
          const r = readUsage(JSON.stringify({ days: 7, [listKey]: list }));
          if (listKey === "days") {
            // `days` as the list itself (no window number beside it).
            const s = readUsage(JSON.stringify({ days: list }));
            expect(s.ok && s.usage.days).toEqual(dates.map((d, i) => ({ date: d, spentAtomic: amounts[i] })));
            return;
          }
          expect(r.ok && r.usage.days).toEqual(dates.map((d, i) => ({ date: d, spentAtomic: amounts[i] })));
        },
      ),
      BUDGET,
    );
  });
});
