import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkConfigCommand } from "../../src/cli/check-config.js";
import { closestKey, keysAt } from "../../src/config/schema-keys.js";
import { configFileSchema } from "../../src/config/schema.js";

/**
 * `check-config` refuses bad `resilience.*` values (docs/configuration.md, Resilience): exit
 * 78, a message naming the field, and what to write instead (the bound, the type, the keys
 * that place takes, or the value that would fit the other settings).
 */
const dir = mkdtempSync(join(tmpdir(), "stoka-resilience-config-"));
let n = 0;

async function check(yaml: string): Promise<{ code: number; error: string; hint: string }> {
  const path = join(dir, `c${n++}.yaml`);
  writeFileSync(path, yaml);
  let out = "";
  const code = await checkConfigCommand(
    { STOKA_PROXY_CONFIG: path },
    {},
    true,
    (t) => (out += t),
    () => undefined,
  );
  const j = JSON.parse(out) as { error?: string; hint?: string };
  return { code, error: j.error ?? "", hint: j.hint ?? "" };
}

const r = (body: string) => `resilience:\n${body}`;

describe("check-config refuses bad resilience values, naming the field and what to write", () => {
  it.each([
    // negative
    ["negative delay", r("  retry:\n    base_delay_ms: -5\n"), "resilience.retry.base_delay_ms", />=0/],
    [
      "negative per-route delay",
      r("  retry:\n    routes:\n      store:\n        max_total_ms: -1\n"),
      "resilience.retry.routes.store.max_total_ms",
      />=0/,
    ],
    [
      "negative max wait",
      r("  rate_limit:\n    max_wait_ms: -1\n"),
      "resilience.rate_limit.max_wait_ms",
      />=0/,
    ],
    [
      "negative increase",
      r("  rate_limit:\n    adaptive:\n      increase_per_second: -1\n"),
      "resilience.rate_limit.adaptive.increase_per_second",
      />=0/,
    ],
    [
      "negative resends",
      r("  paid_resend:\n    max_resends: -1\n"),
      "resilience.paid_resend.max_resends",
      />=0/,
    ],
    // zero where it is invalid
    ["zero attempts", r("  retry:\n    max_attempts: 0\n"), "resilience.retry.max_attempts", />=1/],
    [
      "zero rate",
      r("  rate_limit:\n    rate_per_second: 0\n"),
      "resilience.rate_limit.rate_per_second",
      />0/,
    ],
    ["zero burst", r("  rate_limit:\n    burst: 0\n"), "resilience.rate_limit.burst", />=1/],
    [
      "zero floor",
      r("  rate_limit:\n    adaptive:\n      floor_per_second: 0\n"),
      "resilience.rate_limit.adaptive.floor_per_second",
      />0/,
    ],
    [
      "decrease factor 0",
      r("  rate_limit:\n    adaptive:\n      decrease_factor: 0\n"),
      "resilience.rate_limit.adaptive.decrease_factor",
      />0/,
    ],
    [
      "decrease factor 1",
      r("  rate_limit:\n    adaptive:\n      decrease_factor: 1\n"),
      "resilience.rate_limit.adaptive.decrease_factor",
      /<1/,
    ],
    [
      "zero failure threshold",
      r("  circuit_breaker:\n    failure_threshold: 0\n"),
      "resilience.circuit_breaker.failure_threshold",
      />=1/,
    ],
    [
      "zero window",
      r("  circuit_breaker:\n    window_seconds: 0\n"),
      "resilience.circuit_breaker.window_seconds",
      />0/,
    ],
    [
      "zero per-route cool-down",
      r("  circuit_breaker:\n    routes:\n      store:\n        cool_down_seconds: 0\n"),
      "resilience.circuit_breaker.routes.store.cool_down_seconds",
      />0/,
    ],
    ["zero registry", r("  idempotency:\n    max_entries: 0\n"), "resilience.idempotency.max_entries", />=1/],
    [
      "zero in-flight ttl",
      r("  idempotency:\n    in_flight_ttl_seconds: 0\n"),
      "resilience.idempotency.in_flight_ttl_seconds",
      />0/,
    ],
    // out of range
    ["jitter above 1", r("  rate_limit:\n    jitter: 2\n"), "resilience.rate_limit.jitter", /<=1/],
    ["too many attempts", r("  retry:\n    max_attempts: 11\n"), "resilience.retry.max_attempts", /<=10/],
    ["fractional attempts", r("  retry:\n    max_attempts: 2.5\n"), "resilience.retry.max_attempts", /int/i],
    // wrong types
    [
      "a string for a number",
      r('  retry:\n    max_attempts: "3"\n'),
      "resilience.retry.max_attempts",
      /expected number, received string/,
    ],
    [
      "a string for a boolean",
      r("  rate_limit:\n    enabled: yes please\n"),
      "resilience.rate_limit.enabled",
      /expected boolean/,
    ],
    ["a number for the section", "resilience: 5\n", "resilience", /expected object/],
    ["a list for a section", r("  circuit_breaker: [1]\n"), "resilience.circuit_breaker", /expected object/],
    [
      "a bad route name",
      r("  retry:\n    routes:\n      Store!: {}\n"),
      "resilience.retry.routes.Store!",
      /Invalid key in record: a route name/,
    ],
    // unknown keys: the keys that place takes, and the likely one
    [
      "unknown section",
      r("  retries: {}\n"),
      "resilience",
      /Unrecognized key.*the keys here are: retry, rate_limit, circuit_breaker, idempotency, paid_resend/,
    ],
    [
      "a misspelt key",
      r("  retry:\n    routes:\n      store:\n        max_attempt: 2\n"),
      "resilience.retry.routes.store",
      /did you mean max_attempts\?/,
    ],
    [
      "a misspelt adaptive key",
      r("  rate_limit:\n    adaptive:\n      floor_per_sec: 1\n"),
      "resilience.rate_limit.adaptive",
      /did you mean floor_per_second\?/,
    ],
  ])("%s", async (_what, yaml, field, expected) => {
    const { code, error } = await check(yaml);
    expect(code).toBe(78);
    expect(error).toContain(`${field}: `);
    expect(error).toMatch(expected);
  });

  it.each([
    [
      "a floor above the rate",
      r("  rate_limit:\n    rate_per_second: 20\n    adaptive:\n      floor_per_second: 50\n"),
      "resilience.rate_limit.adaptive.floor_per_second: 50 is above rate_per_second (20)",
      "write floor_per_second: 20 or less, or raise rate_per_second to 50 or more",
    ],
    [
      "a ceiling below the floor",
      r("  rate_limit:\n    adaptive:\n      floor_per_second: 5\n      ceiling_per_second: 2\n"),
      "resilience.rate_limit.adaptive.ceiling_per_second: 2 is below floor_per_second (5)",
      "write ceiling_per_second: 5 or more",
    ],
    [
      "a rate above the ceiling",
      r("  rate_limit:\n    rate_per_second: 20\n    adaptive:\n      ceiling_per_second: 10\n"),
      "resilience.rate_limit.rate_per_second: 20 is above adaptive.ceiling_per_second (10)",
      "write rate_per_second: 10 or less",
    ],
  ])("%s: the field written and a value that fits", async (_what, yaml, message, hint) => {
    const { code, error, hint: got } = await check(yaml);
    expect(code).toBe(78);
    expect(error).toContain(message);
    expect(got).toContain(hint);
  });

  it.each([
    r("  rate_limit:\n    rate_per_second: 20\n    adaptive:\n      floor_per_second: 20\n"),
    r("  rate_limit:\n    enabled: false\n    rate_per_second: 1\n"),
    r("  retry:\n    max_attempts: 1\n    routes:\n      store:\n        max_attempts: 5\n"),
    r("  circuit_breaker:\n    enabled: false\n"),
    r("  paid_resend:\n    max_resends: 0\n"),
  ])("accepts a valid setting (%#)", async (yaml) => {
    expect((await check(yaml)).code).toBe(0);
  });
});

describe("the keys a place in the configuration takes", () => {
  it("reads them from the schema, through optional sections and records", () => {
    expect(keysAt(configFileSchema, ["resilience", "retry", "routes", "any_route"])).toEqual([
      "max_attempts",
      "base_delay_ms",
      "max_delay_ms",
      "max_total_ms",
      "retry_after_cap_ms",
    ]);
    expect(keysAt(configFileSchema, ["resilience", "nope"])).toBeNull();
  });

  it.each([
    ["max_attempt", "max_attempts"],
    ["rate_per_sec", "rate_per_second"],
    ["brust", "burst"],
    ["something_else", undefined],
  ])("%s → %s", (unknown, expected) => {
    expect(closestKey(unknown, ["max_attempts", "rate_per_second", "burst", "jitter"])).toBe(expected);
  });
});
