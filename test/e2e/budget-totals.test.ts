import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { rollingSlotMs } from "../../src/budget/budget.js";
import type { Budget, Period } from "../../src/config/config.js";
import type { LaterState, PaymentFacts, PaymentStore } from "../../src/store/payment-store.js";
import { STORE_KINDS, makePlace } from "../support/payment-stores.js";
import type { StoreKind, StorePlace } from "../support/payment-stores.js";

/**
 * The running budget totals (one row per limit and calendar bucket, kept by triggers) against
 * the entries they summarise, for both stores: after any mix of reservations, settlements,
 * rejections and direct edits the totals equal the entries' sums, a refusal reports the same
 * spend, and a database written before the totals existed is backfilled on upgrade.
 */
const P = 1000n;
const T0 = Date.UTC(2025, 2, 31, 22, 15);
const HOUR = 3_600_000;

const cal = (unit: "hour" | "day" | "month"): Period => ({ kind: "calendar", unit });
const budgets: Budget[] = [
  {
    name: "team",
    match: {},
    limits: [
      { period: cal("hour"), amount: 10n ** 12n },
      { period: cal("day"), amount: 10n ** 12n },
      { period: { kind: "rolling", seconds: 7200 }, amount: 10n ** 12n },
    ],
  },
  { name: "app", match: {}, limits: [{ period: cal("month"), amount: 10n ** 12n }] },
];

function facts(paymentId: string, amount: bigint): PaymentFacts {
  return {
    paymentId,
    requestId: `req-${paymentId}`,
    client: "app",
    route: "store",
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    amount,
    payTo: "GPAYEE",
    asset: "USDC",
    network: "stellar:testnet",
  };
}

type Ending = "settled" | "rejected" | "failed" | "indeterminate" | "open";
const ENDINGS: readonly Ending[] = ["settled", "rejected", "failed", "indeterminate", "open"];

async function pay(store: PaymentStore, id: string, amount: bigint, atMs: number, ending: Ending) {
  const r = await store.open({ payment: facts(id, amount), budgets, nowMs: atMs, leaseUntilMs: atMs + HOUR });
  if (!r.ok) throw new Error(`${id} refused`);
  const step = (state: LaterState) =>
    store.record({ paymentId: id, state, atMs: atMs + 1, tx: null, upstreamStatus: 200, reason: null });
  if (ending === "open") return;
  if (ending === "failed") return void (await step("failed"));
  await step("sent");
  await step(ending);
}

/** Where budget.ts says an entry is totalled: its calendar bucket, or its rolling slot. */
function totalsBucketOf(key: string, bucket: bigint, atMs: bigint): bigint {
  const m = /:rolling_([0-9]+)s$/.exec(key);
  return m ? atMs / BigInt(rollingSlotMs(Number(m[1]))) : bucket;
}

/** Totals that differ from the entries summed here (zero totals of emptied buckets allowed). */
async function drift(place: StorePlace): Promise<unknown[]> {
  const num = place.kind === "postgres" ? "::text" : "";
  const entries = await place.sql(
    `SELECT limit_key, CAST(bucket AS TEXT) AS bucket, CAST(at_ms AS TEXT) AS at_ms, amount${num} AS amount FROM budget_entries`,
  );
  const expected = new Map<string, bigint>();
  for (const e of entries) {
    const k = `${String(e.limit_key)}@${totalsBucketOf(String(e.limit_key), BigInt(String(e.bucket)), BigInt(String(e.at_ms)))}`;
    expected.set(k, (expected.get(k) ?? 0n) + BigInt(String(e.amount)));
  }
  const totals = await place.sql(
    `SELECT limit_key, CAST(bucket AS TEXT) AS bucket, amount${num} AS s FROM budget_totals`,
  );
  const out: unknown[] = [];
  const seen = new Set<string>();
  for (const t of totals) {
    const k = `${String(t.limit_key)}@${String(t.bucket)}`;
    seen.add(k);
    if (BigInt(String(t.s)) !== (expected.get(k) ?? 0n))
      out.push({ total: k, is: String(t.s), entries: String(expected.get(k) ?? 0n) });
  }
  for (const [k, v] of expected) if (!seen.has(k) && v !== 0n) out.push({ missing: k, entries: String(v) });
  return out;
}

describe.each(STORE_KINDS)("running budget totals (%s)", (kind: StoreKind) => {
  let place: StorePlace;
  let store: PaymentStore;

  beforeEach(async () => {
    place = await makePlace(kind);
    store = await place.open();
  });
  afterEach(async () => {
    await store.close();
    await place.drop();
  });

  it("equal the entries after any mix of payments and endings, and the refusal reports that spend", async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            amount: fc.bigInt({ min: 1n, max: 10n ** 7n }),
            hoursLater: fc.integer({ min: 0, max: 30 }),
            ending: fc.constantFrom(...ENDINGS),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        async (steps) => {
          for (const s of steps) await pay(store, `p${n++}`, s.amount, T0 + s.hoursLater * HOUR, s.ending);
          expect(await drift(place)).toEqual([]);
        },
      ),
      { numRuns: 12 },
    );
    // What a reservation reads is what the entries hold: a price just over the rest is refused
    // with the entries' own sum as the spend.
    const day = await place.sql(
      `SELECT COALESCE(SUM(amount), 0)${kind === "postgres" ? "::text" : ""} AS s FROM budget_entries WHERE limit_key = 'team:day' AND bucket = ?`.replace(
        "?",
        kind === "postgres" ? "$1" : "?",
      ),
      [Date.UTC(2025, 2, 31)],
    );
    const spent = BigInt(String(day[0]?.s));
    const tight: Budget = {
      name: "team",
      match: {},
      limits: [{ period: cal("day"), amount: spent + P - 1n }],
    };
    const r = await store.open({
      payment: facts("over", P),
      budgets: [tight],
      nowMs: T0,
      leaseUntilMs: T0 + HOUR,
    });
    expect(r).toEqual({
      ok: false,
      denial: { budget: "team", period: "day", limit: spent + P - 1n, spent, price: P },
    });
  });

  it("a rolling window's use is exactly the entries inside it, at any moment, whatever its length", async () => {
    const windows = [1, 7, 60, 3600, 86_400];
    const rolling: Budget[] = windows.map((w) => ({
      name: `w${w}`,
      match: {},
      limits: [{ period: { kind: "rolling", seconds: w }, amount: 10n ** 15n }],
    }));
    const paid: { atMs: number; amount: bigint; kept: boolean }[] = [];
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            amount: fc.bigInt({ min: 1n, max: 10n ** 6n }),
            msLater: fc.integer({ min: 0, max: 2 * 86_400_000 }),
            kept: fc.boolean(),
          }),
          { minLength: 1, maxLength: 10 },
        ),
        fc.array(fc.integer({ min: -1000, max: 3 * 86_400_000 }), { minLength: 1, maxLength: 6 }),
        async (steps, probes) => {
          for (const s of steps) {
            const id = `r${n++}`;
            const atMs = T0 + s.msLater;
            const r = await store.open({
              payment: facts(id, s.amount),
              budgets: rolling,
              nowMs: atMs,
              leaseUntilMs: atMs + HOUR,
            });
            if (!r.ok) throw new Error("refused");
            await store.record({
              paymentId: id,
              state: s.kept ? "settled" : "failed",
              atMs: atMs + 1,
              tx: null,
              upstreamStatus: 200,
              reason: null,
            });
            paid.push({ atMs, amount: s.amount, kept: s.kept });
          }
          for (const p of probes) {
            const nowMs = T0 + p;
            for (const [i, w] of windows.entries()) {
              const since = nowMs - w * 1000;
              const want = paid.filter((x) => x.kept && x.atMs > since).reduce((a, x) => a + x.amount, 0n);
              const b = rolling[i] as Budget;
              expect(await store.used(b, b.limits[0] as Budget["limits"][number], nowMs)).toBe(want);
            }
          }
          expect(await drift(place)).toEqual([]);
        },
      ),
      { numRuns: 10 },
    );
  });

  it("follow entries changed or removed by hand (another writer on the same tables)", async () => {
    await pay(store, "a", 5n * P, T0, "settled");
    await pay(store, "b", 2n * P, T0, "settled");
    await place.sql(
      "UPDATE budget_entries SET amount = amount + 700 WHERE payment_id = 'b' AND limit_key = 'team:day'",
    );
    expect(await drift(place)).toEqual([]);
    const day = budgets[0]?.limits[1];
    if (!day) throw new Error("no day limit");
    expect(await store.used(budgets[0] as Budget, day, T0)).toBe(7n * P + 700n);
    await place.sql("DELETE FROM budget_entries WHERE payment_id = 'a'");
    expect(await drift(place)).toEqual([]);
    expect(await store.used(budgets[0] as Budget, day, T0)).toBe(2n * P + 700n);
  });

  it("a database written before the totals is backfilled on upgrade: the month's spend still counts", async () => {
    for (let i = 0; i < 6; i++) await pay(store, `old${i}`, P, T0 + i, i % 2 ? "settled" : "rejected");
    await store.close();
    // Back to the layout of the build before: no totals, no triggers.
    if (kind === "sqlite") {
      for (const t of ["budget_totals_insert", "budget_totals_delete", "budget_totals_update"])
        await place.sql(`DROP TRIGGER ${t}`);
      await place.sql("DROP TABLE budget_totals");
    } else {
      await place.sql("DROP TRIGGER budget_totals_follow ON budget_entries");
      await place.sql("DROP FUNCTION budget_totals_follow()");
      await place.sql("DROP TRIGGER budget_totals_clear ON budget_entries");
      await place.sql("DROP FUNCTION budget_totals_clear()");
      await place.sql("DROP TABLE budget_totals");
      await place.sql("DROP FUNCTION stoka_limit_used(TEXT, BOOLEAN, BIGINT, BIGINT)");
      await place.sql("DROP FUNCTION stoka_total_bucket(TEXT, BIGINT, BIGINT)");
      await place.sql("DROP FUNCTION stoka_slot_ms(TEXT)");
      await place.sql("DROP INDEX budget_entries_window");
      await place.sql("CREATE INDEX budget_entries_at ON budget_entries (limit_key, at_ms)");
      await place.sql("DELETE FROM schema_migrations WHERE version = 3");
    }
    store = await place.open();
    expect(await drift(place)).toEqual([]);
    const month: Budget = { name: "app", match: {}, limits: [{ period: cal("month"), amount: 4n * P }] };
    const r = await store.open({
      payment: facts("new", 2n * P),
      budgets: [month],
      nowMs: T0 + 10,
      leaseUntilMs: T0 + HOUR,
    });
    expect(r).toEqual({
      ok: false,
      denial: { budget: "app", period: "month", limit: 4n * P, spent: 3n * P, price: 2n * P },
    });
    expect(
      (
        await store.open({
          payment: facts("fits", P),
          budgets: [month],
          nowMs: T0 + 11,
          leaseUntilMs: T0 + HOUR,
        })
      ).ok,
    ).toBe(true);
    expect(await drift(place)).toEqual([]);
  });
});
