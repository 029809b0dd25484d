import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StokaProxyError } from "../../src/errors.js";
import { readUsageDays } from "../../src/stoka/client.js";
import { nestingDepth, parseBoundedJson, readBoundedJson } from "../../src/parsing/bounded-json.js";
import { parseChallenge } from "../../src/x402/challenge.js";
import { receiptTx } from "../../src/x402/outcome.js";

/** JSON from upstreams and clients, bounded in size and depth before parsing. */
const LIMITS = { maxBytes: 1024, maxDepth: 4 };
/**
 * Property runs stop after a time budget (other work runs on the machine), never on a timing assertion:
 * `numRuns` is far more than fits in it, so the clock is what stops them.
 */
const BUDGET = { numRuns: 10_000_000, interruptAfterTimeLimit: 2_000 };

function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf));
  if (typeof v === "object" && v !== null) return 1 + Math.max(0, ...Object.values(v).map(depthOf));
  return 0;
}

describe("bounded JSON: table", () => {
  it.each([
    ["a scalar", "1", true],
    ["a string", '"[[[[[[[[["', true],
    ["depth 4", "[[[[]]]]", true],
    ["depth 4 in objects", '{"a":{"b":{"c":{"d":1}}}}', true],
    ["depth 5", "[[[[[]]]]]", false],
    ["depth 5 mixing objects and arrays", '{"a":[{"b":[{"c":1}]}]}', false],
    ["brackets inside strings do not count", '[["[[[[[[", "{{{{{{"]]', true],
    ["escaped quotes do not end a string", '["\\"[[[[[[[", "\\\\"]', true],
    ["an escaped backslash before the closing quote", '["\\\\", [[[]]]]', true],
    ["depth past the limit after an escaped quote", '["\\"", [[[[]]]]]', false],
    ["not JSON", "{nope", false],
    ["empty", "", false],
    ["too large", `"${"x".repeat(1100)}"`, false],
    ["too large in UTF-8 only (2 bytes per é)", `"${"é".repeat(600)}"`, false],
  ] as const)("%s", (_name, text, ok) => {
    const r = readBoundedJson(text, LIMITS);
    expect(r.ok).toBe(ok);
    if (r.ok) expect(r.value).toEqual(JSON.parse(text));
  });

  it("says why it refused", () => {
    expect(readBoundedJson("[[[[[[]]]]]]", LIMITS)).toEqual({
      ok: false,
      reason: "JSON nests deeper than 4 levels",
    });
    expect(readBoundedJson("x".repeat(2000), LIMITS)).toEqual({
      ok: false,
      reason: "JSON is larger than 1024 bytes",
    });
    expect(() => parseBoundedJson("[".repeat(100_000))).toThrow(SyntaxError);
  });

  it("refuses 100 000 levels without a stack overflow, and with the default limits", () => {
    const text = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    expect(readBoundedJson(text)).toMatchObject({ ok: false });
    expect(nestingDepth(text, 32)).toBe(33); // stops counting past the limit
  });
});

describe("bounded JSON: properties", () => {
  it("agrees with JSON.parse on every JSON within the bounds", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        const text = JSON.stringify(value);
        const r = readBoundedJson(text, { maxBytes: 1 << 20, maxDepth: 32 });
        expect(r).toEqual({ ok: true, value: JSON.parse(text) });
        expect(nestingDepth(text)).toBe(depthOf(JSON.parse(text)));
      }),
      BUDGET,
    );
  });

  it("whatever the text, never throws, and what it accepts is within bounds and serialisable", () => {
    const texts = fc.oneof(
      fc.string(),
      fc.string({ unit: fc.constantFrom("[", "]", "{", "}", '"', "\\", ",", ":", "1", "a") }),
      fc.jsonValue({ maxDepth: 8 }).map((v) => JSON.stringify(v)),
    );
    fc.assert(
      fc.property(texts, (text) => {
        const r = readBoundedJson(text, LIMITS);
        if (!r.ok) return;
        expect(r.value).toEqual(JSON.parse(text));
        expect(depthOf(r.value)).toBeLessThanOrEqual(LIMITS.maxDepth);
        expect(() => JSON.stringify(r.value)).not.toThrow();
      }),
      BUDGET,
    );
  });

  it("accepts a nesting exactly when it is no deeper than the limit, strings with brackets included", () => {
    const layer = fc.oneof(
      fc.constant(["[", "]"] as const),
      fc
        .string({ unit: fc.constantFrom("[", "{", '"', "\\", "a") })
        .map((k) => [`{${JSON.stringify(k)}:`, "}"] as const),
      fc
        .string({ unit: fc.constantFrom("]", "}", '"', "\\") })
        .map((s) => [`[${JSON.stringify(s)},`, "]"] as const),
    );
    fc.assert(
      fc.property(fc.array(layer, { maxLength: 12 }), (layers) => {
        const text =
          layers.map((l) => l[0]).join("") +
          "0" +
          [...layers]
            .reverse()
            .map((l) => l[1])
            .join("");
        const r = readBoundedJson(text, { maxBytes: 1 << 20, maxDepth: 6 });
        expect(r.ok).toBe(layers.length <= 6);
      }),
      BUDGET,
    );
  });
});

describe("bounded JSON at its callers", () => {
  const deep = `${"[".repeat(50_000)}${"]".repeat(50_000)}`;
  const requirement = {
    scheme: "exact",
    network: "stellar:testnet",
    asset: "C".padEnd(56, "A"),
    payTo: "G".padEnd(56, "A"),
    amount: "1000",
    maxTimeoutSeconds: 60,
  };

  it("parseChallenge refuses a deep body and a deep PAYMENT-REQUIRED header", () => {
    const body = JSON.stringify({ x402Version: 2, accepts: [{ ...requirement, extra: "DEEP" }] }).replace(
      '"DEEP"',
      deep,
    );
    expect(parseChallenge({}, body)).toMatchObject({ ok: false, reason: expect.stringMatching(/deeper/) });
    const header = Buffer.from(body).toString("base64");
    expect(parseChallenge({ "payment-required": header }, "")).toMatchObject({ ok: false });
    // The same shapes at a sane depth are read.
    const sane = JSON.stringify({ x402Version: 2, accepts: [{ ...requirement, extra: { a: [1] } }] });
    expect(parseChallenge({}, sane).ok).toBe(true);
    expect(parseChallenge({ "payment-required": Buffer.from(sane).toString("base64") }, "").ok).toBe(true);
  });

  it("a deep receipt is no receipt", () => {
    const tx = "ab".repeat(32);
    const receipt = (extra: string) =>
      Buffer.from(`{"success":true,"transaction":"${tx}","network":"n","payer":"p","x":${extra}}`).toString(
        "base64",
      );
    expect(receiptTx(receipt("1"))).toBe(tx);
    expect(receiptTx(receipt(deep))).toBeNull();
  });

  it.each([
    [
      "a usage answer",
      '{"days":[{"date":"2026-01-01","spent_atomic":"1400"}]}',
      [{ date: "2026-01-01", spentAtomic: 1400n }],
    ],
    [
      "a window and a series (the live API)",
      '{"days":7,"series":[{"day":"2026-01-01","charged_atomic":1400}]}',
      [{ date: "2026-01-01", spentAtomic: 1400n }],
    ],
    ["a list of no days", "[]", []],
  ] as const)("readUsageDays reads %s", (_name, body, days) => {
    expect(readUsageDays(body)).toEqual(days);
  });

  it.each([
    ["JSON null", "null"],
    ["an object without days", "{}"],
    ["a deep answer", `{"days":${deep}}`],
    ["days that is not a list", '{"days":{"date":"x"}}'],
    ["a day without a date", '{"days":[{"spent_atomic":"1"}]}'],
    ["a spent amount that is not a whole number", '{"days":[{"date":"d","spent_atomic":"1e3"}]}'],
    ["not JSON", "<html>"],
  ])("readUsageDays refuses %s with a StokaProxyError", (_name, body) => {
    expect(() => readUsageDays(body)).toThrow(StokaProxyError);
  });
});
