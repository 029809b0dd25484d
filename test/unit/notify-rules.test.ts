import { describe, expect, it } from "vitest";
import {
  breakerOpenEvent,
  budgetThresholdEvent,
  killSwitchOnEvent,
  payloadOf,
  paymentIndeterminateEvent,
  paymentRefusedTermsEvent,
  reconcileMismatchEvent,
} from "../../src/operator/notify/events.js";
import type { NotificationEvent } from "../../src/operator/notify/events.js";
import { destinationsFor, ruleMatches, watchedThresholds } from "../../src/operator/notify/rules.js";
import type { NotificationRule } from "../../src/operator/notify/rules.js";
import { ThresholdWatcher } from "../../src/operator/notify/thresholds.js";
import type { LimitUse } from "../../src/operator/notify/thresholds.js";

/** Which events go where, and when a budget threshold fires. */

const AT = Date.parse("2026-03-15T12:00:00Z");
const DAY = Date.parse("2026-03-15T00:00:00Z");
const NEXT_DAY = Date.parse("2026-03-16T00:00:00Z");

const threshold = (pct: number) =>
  budgetThresholdEvent({
    budget: "daily",
    period: "day",
    periodStartMs: DAY,
    limit: 1000n,
    used: 1000n,
    thresholdPercent: pct,
    atMs: AT,
  });
const indeterminate = paymentIndeterminateEvent({
  paymentId: "p1",
  route: "store",
  client: "app",
  amount: 1400n,
  reason: "upstream answered 502 after the paid retry",
  upstreamStatus: 502,
  tx: null,
  atMs: AT,
});
const refused = paymentRefusedTermsEvent({
  host: "test.api.stoka.space",
  route: "store",
  client: "app",
  term: "pay_to",
  offered: "GXXX",
  reason: "payee not trusted",
  price: 1400n,
  atMs: AT,
});

describe("rule matching", () => {
  it.each<[string, NotificationRule, NotificationEvent, boolean]>([
    ["event listed", { events: ["payment.indeterminate"], minSeverity: "info" }, indeterminate, true],
    ["event not listed", { events: ["reconcile.mismatch"], minSeverity: "info" }, indeterminate, false],
    ["severity at the minimum", { events: ["payment.refused_terms"], minSeverity: "warning" }, refused, true],
    [
      "severity below the minimum",
      { events: ["payment.refused_terms"], minSeverity: "critical" },
      refused,
      false,
    ],
    ["default thresholds: 80", { events: ["budget.threshold"], minSeverity: "info" }, threshold(80), true],
    ["default thresholds: 100", { events: ["budget.threshold"], minSeverity: "info" }, threshold(100), true],
    [
      "default thresholds: 90 is not one",
      { events: ["budget.threshold"], minSeverity: "info" },
      threshold(90),
      false,
    ],
    [
      "listed threshold",
      { events: ["budget.threshold"], minSeverity: "info", thresholds: [50, 90] },
      threshold(90),
      true,
    ],
    [
      "unlisted threshold",
      { events: ["budget.threshold"], minSeverity: "info", thresholds: [50] },
      threshold(80),
      false,
    ],
    ["80 % is a warning", { events: ["budget.threshold"], minSeverity: "critical" }, threshold(80), false],
    ["100 % is critical", { events: ["budget.threshold"], minSeverity: "critical" }, threshold(100), true],
  ])("%s", (_name, rule, event, matches) => {
    expect(ruleMatches(rule, event)).toBe(matches);
  });

  it("sends an event once to each destination any matching rule names, in config order", () => {
    const rules: NotificationRule[] = [
      { events: ["payment.indeterminate"], minSeverity: "info", destinations: ["pager"] },
      {
        events: ["payment.indeterminate", "payment.refused_terms"],
        minSeverity: "warning",
        destinations: ["chat", "pager"],
      },
      { events: ["budget.threshold"], minSeverity: "info" }, // every destination
    ];
    const all = ["chat", "audit", "pager"];
    expect(destinationsFor(rules, all, indeterminate)).toEqual(["chat", "pager"]);
    expect(destinationsFor(rules, all, refused)).toEqual(["chat", "pager"]);
    expect(destinationsFor(rules, all, threshold(80))).toEqual(all);
    expect(destinationsFor(rules, all, threshold(50))).toEqual([]);
    expect(destinationsFor([], all, indeterminate)).toEqual([]);
  });

  it("watches the union of every threshold rule's thresholds", () => {
    expect(
      watchedThresholds([
        { events: ["budget.threshold"], minSeverity: "info" },
        { events: ["budget.threshold"], minSeverity: "info", thresholds: [50, 100] },
        { events: ["payment.indeterminate"], minSeverity: "info" },
      ]),
    ).toEqual([50, 80, 100]);
    expect(watchedThresholds([{ events: ["payment.indeterminate"], minSeverity: "info" }])).toEqual([]);
  });
});

describe("budget thresholds fire once per budget, per limit, per period", () => {
  const use = (used: bigint, over: Partial<LimitUse> = {}): LimitUse => ({
    budget: "daily",
    period: "day",
    periodStartMs: DAY,
    limit: 1000n,
    used,
    ...over,
  });

  it("a day's spend rising through 80 % and 100 %", () => {
    const w = new ThresholdWatcher([80, 100]);
    const steps: [LimitUse, number[]][] = [
      [use(0n), []],
      [use(799n), []],
      [use(800n), [80]], // exactly 80 %
      [use(850n), []], // already told
      [use(700n), []], // fell back (a payment released): still told this period
      [use(900n), []],
      [use(999n), []],
      [use(1000n), [100]],
      [use(1500n), []], // over (indeterminate stays counted): still once
      [use(0n, { periodStartMs: NEXT_DAY }), []], // a new day arms both again
      [use(1200n, { periodStartMs: NEXT_DAY }), [80, 100]], // a jump past both fires both
      [use(1200n, { periodStartMs: NEXT_DAY }), []],
    ];
    for (const [u, expected] of steps) expect(w.observe(u)).toEqual(expected);
  });

  it("keeps budgets and periods apart", () => {
    const w = new ThresholdWatcher([80]);
    expect(w.observe(use(900n))).toEqual([80]);
    expect(w.observe(use(900n, { budget: "other" }))).toEqual([80]);
    expect(
      w.observe(use(900n, { period: "month", periodStartMs: Date.parse("2026-03-01T00:00:00Z") })),
    ).toEqual([80]);
    expect(w.observe(use(950n))).toEqual([]);
  });

  it("a rolling window arms a threshold again once use falls below it", () => {
    const w = new ThresholdWatcher([80, 100]);
    const r = (used: bigint) => w.observe(use(used, { period: "rolling_3600s", periodStartMs: null }));
    expect(r(800n)).toEqual([80]);
    expect(r(900n)).toEqual([]);
    expect(r(799n)).toEqual([]); // below: armed again
    expect(r(800n)).toEqual([80]);
    expect(r(1000n)).toEqual([100]);
  });

  it.each([
    // limit, used, thresholds, fired
    [0n, 0n, [80], []], // a zero limit pays nothing: nothing to warn about
    [0n, 10n, [80], []],
    [3n, 2n, [66.67], []], // 66.66 % < 66.67 %
    [3n, 3n, [66.67], [66.67]],
    [10_000_000n, 9_050_000n, [90.5], [90.5]],
    [10_000_000n, 9_049_999n, [90.5], []],
    [2n ** 70n, 2n ** 70n - 1n, [100], []], // big numbers stay exact
    [1000n, 1000n, [], []],
    [1000n, 1000n, [0, -5, Number.NaN, 100], [100]], // nonsense thresholds ignored
  ] as const)("limit %s, used %s, thresholds %j → %j", (limit, used, thresholds, fired) => {
    expect(new ThresholdWatcher(thresholds).observe(use(used, { limit }))).toEqual(fired);
  });

  it("forgets the oldest limits past its bound", () => {
    const w = new ThresholdWatcher([80], 2);
    expect(w.observe(use(900n, { budget: "a" }))).toEqual([80]);
    expect(w.observe(use(900n, { budget: "b" }))).toEqual([80]);
    expect(w.observe(use(900n, { budget: "c" }))).toEqual([80]); // "a" forgotten
    expect(w.observe(use(900n, { budget: "c" }))).toEqual([]);
    expect(w.observe(use(900n, { budget: "a" }))).toEqual([80]);
  });

  it("makes events with amounts as atomic strings and USDC text", () => {
    const w = new ThresholdWatcher([80, 100]);
    const [e] = w.events(use(8_000_000n, { limit: 10_000_000n }), AT);
    expect(e).toMatchObject({
      name: "budget.threshold",
      severity: "warning",
      thresholdPercent: 80,
      dedupKey: `budget.threshold|daily|day|${DAY}|80`,
      data: {
        budget: "daily",
        period: "day",
        period_start: "2026-03-15T00:00:00.000Z",
        threshold_percent: 80,
        used_percent: 80,
        used: { atomic: "8000000", usdc: "0.8 USDC" },
        limit: { atomic: "10000000", usdc: "1 USDC" },
      },
    });
  });
});

describe("event payloads", () => {
  it.each([
    ["budget.threshold", threshold(100), "critical"],
    ["payment.indeterminate", indeterminate, "critical"],
    ["payment.refused_terms", refused, "warning"],
    [
      "reconcile.mismatch",
      reconcileMismatchEvent({
        date: "2026-03-14",
        ledgerSettled: 1000n,
        ledgerIndeterminate: 400n,
        upstream: 1200n,
        atMs: AT,
      }),
      "critical",
    ],
    [
      "breaker.open",
      breakerOpenEvent({ breaker: "test.api.stoka.space", reason: "5 failures in 60 s", atMs: AT }),
      "critical",
    ],
    ["killswitch.on", killSwitchOnEvent({ reason: "operator", atMs: AT }), "critical"],
  ] as const)("%s: stable name, severity, JSON body with no float amounts", (name, event, severity) => {
    expect(event.name).toBe(name);
    expect(event.severity).toBe(severity);
    const body = JSON.parse(payloadOf("evt_1", event)) as Record<string, unknown>;
    expect(body).toMatchObject({
      id: "evt_1",
      event: name,
      severity,
      occurred_at: "2026-03-15T12:00:00.000Z",
    });
    expect(typeof body.summary).toBe("string");
    // every amount is an {atomic, usdc} pair of strings
    const walk = (v: unknown): void => {
      if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if ("atomic" in o) {
          expect(o.atomic).toMatch(/^-?[0-9]+$/);
          expect(o.usdc).toMatch(/ USDC$/);
        }
        Object.values(o).forEach(walk);
      }
    };
    walk(body.data);
  });

  it("a reconcile mismatch carries the difference", () => {
    const e = reconcileMismatchEvent({
      date: "2026-03-14",
      ledgerSettled: 1000n,
      ledgerIndeterminate: 400n,
      upstream: 1200n,
      atMs: AT,
    });
    expect(e.data.difference).toEqual({ atomic: "200", usdc: "0.00002 USDC" });
  });

  it("identical facts share a dedup key; different ones do not", () => {
    const again = paymentIndeterminateEvent({
      paymentId: "p1",
      route: "store",
      client: "app",
      amount: 1400n,
      reason: "other words",
      upstreamStatus: 504,
      tx: null,
      atMs: AT + 5,
    });
    expect(again.dedupKey).toBe(indeterminate.dedupKey);
    expect(
      paymentIndeterminateEvent({
        ...{
          paymentId: "p2",
          route: "store",
          client: "app",
          amount: 1n,
          reason: "",
          upstreamStatus: null,
          tx: null,
          atMs: AT,
        },
      }).dedupKey,
    ).not.toBe(indeterminate.dedupKey);
    expect(killSwitchOnEvent({ reason: "x", atMs: AT }).dedupKey).not.toBe(
      killSwitchOnEvent({ reason: "x", atMs: AT + 1 }).dedupKey,
    );
  });
});
