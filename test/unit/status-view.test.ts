import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  budgetLimitView,
  buildStatusView,
  recentPayments,
  spendSince,
  utcDayStart,
  utcMonthStart,
} from "../../src/operator/status/build-view.js";
import type { PaymentSummaryInput } from "../../src/operator/status/build-view.js";
import { derFromPem, sha256Fingerprint } from "../../src/operator/status/ca-fingerprint.js";
import type { PaymentStateName } from "../../src/operator/status/view.js";
import { createCertificateAuthority } from "../../src/tls/certificates.js";

/** The status page's numbers: UTC windows, indeterminate first, the 50 cap, budget bars. */

// A zone far from UTC: a local-time mistake would move the day and month boundaries.
const savedTz = process.env.TZ;
beforeAll(() => {
  process.env.TZ = "Pacific/Kiritimati"; // UTC+14
});
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

const at = (iso: string) => Date.parse(iso);
let n = 0;
function pay(
  state: PaymentStateName,
  amount: bigint,
  startedAt: string,
  extra: Partial<PaymentSummaryInput> = {},
) {
  n += 1;
  return {
    id: `p${String(n).padStart(4, "0")}`,
    state,
    amount,
    route: "store",
    client: "app",
    startedAtMs: at(startedAt),
    tx: state === "settled" ? "ab".repeat(32) : null,
    ...extra,
  } satisfies PaymentSummaryInput;
}

describe("UTC day and month windows", () => {
  it("runs in a zone far from UTC", () => {
    expect(new Date("2026-03-15T00:00:00Z").getHours()).toBe(14);
  });

  it.each([
    ["2026-03-15T00:00:00.000Z", "2026-03-15T00:00:00.000Z", "2026-03-01T00:00:00.000Z"],
    ["2026-03-15T23:59:59.999Z", "2026-03-15T00:00:00.000Z", "2026-03-01T00:00:00.000Z"],
    ["2026-03-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"],
    ["2026-02-28T23:59:59.999Z", "2026-02-28T00:00:00.000Z", "2026-02-01T00:00:00.000Z"],
    ["2024-02-29T12:00:00.000Z", "2024-02-29T00:00:00.000Z", "2024-02-01T00:00:00.000Z"],
    ["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z"],
    ["2025-12-31T23:59:59.999Z", "2025-12-31T00:00:00.000Z", "2025-12-01T00:00:00.000Z"],
  ])("now %s → today from %s, month from %s", (now, day, month) => {
    expect(new Date(utcDayStart(at(now))).toISOString()).toBe(day);
    expect(new Date(utcMonthStart(at(now))).toISOString()).toBe(month);
  });

  const payments = [
    pay("settled", 100n, "2026-03-14T23:59:59.999Z", { route: "store", client: "a" }), // yesterday, this month
    pay("settled", 200n, "2026-03-15T00:00:00.000Z", { route: "store", client: "a" }), // first ms of today
    pay("indeterminate", 400n, "2026-03-15T10:00:00.000Z", { route: "retrieve", client: "b" }),
    pay("settled", 800n, "2026-02-28T23:59:59.999Z", { route: "store", client: "a" }), // last month
    pay("rejected", 1600n, "2026-03-15T11:00:00.000Z", { route: "store", client: "a" }), // nothing charged
    pay("failed", 3200n, "2026-03-15T11:00:00.000Z", { route: "store", client: "a" }),
    pay("sent", 6400n, "2026-03-15T11:00:00.000Z", { route: "store", client: "a" }), // in flight
    pay("settled", 12800n, "2026-03-15T23:59:59.999Z", { route: "queue_push", client: "c" }), // last ms of today
  ];
  const view = buildStatusView({ payments, budgets: [] }, () => at("2026-03-15T23:59:59.999Z"));

  it("today counts settled and indeterminate payments started since 00:00 UTC", () => {
    expect(view.today.sinceMs).toBe(at("2026-03-15T00:00:00.000Z"));
    expect(view.today.total).toBe(200n + 400n + 12800n);
    expect(view.today.payments).toBe(3);
    expect(view.today.byRoute).toEqual([
      { key: "queue_push", total: 12800n, indeterminate: 0n, payments: 1 },
      { key: "retrieve", total: 400n, indeterminate: 400n, payments: 1 },
      { key: "store", total: 200n, indeterminate: 0n, payments: 1 },
    ]);
    expect(view.today.byClient.map((r) => [r.key, r.total])).toEqual([
      ["c", 12800n],
      ["b", 400n],
      ["a", 200n],
    ]);
  });

  it("this month starts on the 1st at 00:00 UTC", () => {
    expect(view.month.sinceMs).toBe(at("2026-03-01T00:00:00.000Z"));
    expect(view.month.total).toBe(100n + 200n + 400n + 12800n);
    expect(view.month.byRoute.find((r) => r.key === "store")).toEqual({
      key: "store",
      total: 300n,
      indeterminate: 0n,
      payments: 2,
    });
  });

  it("a payment stamped ahead of this clock still counts (never hides money)", () => {
    const t = spendSince([pay("settled", 5n, "2026-03-16T00:00:01.000Z")], at("2026-03-15T00:00:00.000Z"));
    expect(t.total).toBe(5n);
  });

  it("rows with equal totals sort by name", () => {
    const t = spendSince(
      [
        pay("settled", 5n, "2026-03-15T01:00:00Z", { route: "b" }),
        pay("settled", 5n, "2026-03-15T01:00:00Z", { route: "a" }),
      ],
      0,
    );
    expect(t.byRoute.map((r) => r.key)).toEqual(["a", "b"]);
  });
});

describe("recent payments: indeterminate first, at most 50", () => {
  it("puts every indeterminate payment first, newest first, then the others newest first", () => {
    const old = pay("indeterminate", 1n, "2026-01-01T00:00:00Z");
    const newer = pay("indeterminate", 2n, "2026-03-01T00:00:00Z");
    const settled = pay("settled", 3n, "2026-03-10T00:00:00Z");
    const rejected = pay("rejected", 4n, "2026-03-11T00:00:00Z");
    const r = recentPayments([old, settled, newer, rejected]);
    expect(r.rows.map((p) => p.id)).toEqual([newer.id, old.id, rejected.id, settled.id]);
    expect(r.indeterminateCount).toBe(2);
    expect(r.indeterminateAmount).toBe(3n);
    expect(r.omitted).toBe(0);
  });

  it.each([
    [0, 0, 0, 0],
    [49, 0, 49, 0],
    [50, 0, 50, 0],
    [51, 0, 50, 1],
    [120, 3, 50, 73],
    [10, 60, 50, 20],
  ])("%i others and %i indeterminate → %i rows, %i omitted", (others, indet, rows, omitted) => {
    const list: PaymentSummaryInput[] = [];
    for (let i = 0; i < others; i++)
      list.push(pay("settled", 1n, new Date(at("2026-03-01T00:00:00Z") + i * 1000).toISOString()));
    for (let i = 0; i < indet; i++)
      list.push(pay("indeterminate", 1n, new Date(at("2025-01-01T00:00:00Z") + i * 1000).toISOString()));
    const r = recentPayments(list);
    expect(r.rows).toHaveLength(rows);
    expect(r.omitted).toBe(omitted);
    expect(r.cap).toBe(50);
    expect(r.indeterminateCount).toBe(indet);
    // indeterminate rows first even though they are older than every other row
    const firstOther = r.rows.findIndex((p) => p.state !== "indeterminate");
    const lastIndet = r.rows.map((p) => p.state).lastIndexOf("indeterminate");
    if (firstOther >= 0 && lastIndet >= 0) expect(lastIndet).toBeLessThan(firstOther);
    // newest first within each group
    for (let i = 1; i < r.rows.length; i++) {
      const a = r.rows[i - 1]!;
      const b = r.rows[i]!;
      if (a.state === "indeterminate" && b.state !== "indeterminate") continue;
      expect(a.atMs).toBeGreaterThanOrEqual(b.atMs);
    }
    // the kept others are the newest ones
    if (others > 0 && rows - Math.min(indet, 50) > 0) {
      const newestOther = at("2026-03-01T00:00:00Z") + (others - 1) * 1000;
      expect(r.rows[Math.min(indet, 50)]!.atMs).toBe(newestOther);
    }
  });
});

describe("budget bars", () => {
  it.each([
    // reserved (budget), limit, used → spent, reserved, spent bp, reserved bp, used bp, over
    [0n, 1000n, 0n, 0n, 0n, 0, 0, 0, false],
    [0n, 1000n, 250n, 250n, 0n, 2500, 0, 2500, false],
    [100n, 1000n, 350n, 250n, 100n, 2500, 1000, 3500, false],
    [0n, 1000n, 1000n, 1000n, 0n, 10000, 0, 10000, false],
    // over the limit (indeterminate payments stay counted): clamped bars, flagged
    [0n, 1000n, 1500n, 1500n, 0n, 10000, 0, 15000, true],
    [300n, 1000n, 1200n, 900n, 300n, 9000, 1000, 12000, true],
    // a budget-wide reservation larger than this limit's use (it started in an earlier bucket)
    [500n, 1000n, 200n, 0n, 200n, 0, 2000, 2000, false],
    // a zero limit: any use is the whole bar and over
    [0n, 0n, 0n, 0n, 0n, 0, 0, 0, false],
    [0n, 0n, 5n, 5n, 0n, 10000, 0, 10000, true],
    // one atomic unit of a huge limit rounds down, never up
    [0n, 10n ** 15n, 1n, 1n, 0n, 0, 0, 0, false],
  ] as const)(
    "reserved %s, limit %s, used %s",
    (reserved, limit, used, spent, res, spentBp, resBp, usedBp, over) => {
      const v = budgetLimitView(reserved, { period: "day", limit, used });
      expect(v).toMatchObject({
        period: "day",
        limit,
        spent,
        reserved: res,
        spentBasisPoints: spentBp,
        reservedBasisPoints: resBp,
        usedBasisPoints: usedBp,
        overLimit: over,
      });
      expect(v.spentBasisPoints + v.reservedBasisPoints).toBeLessThanOrEqual(10_000);
      expect(v.spent + v.reserved).toBe(used);
    },
  );

  it("keeps the per-request cap and the reset time", () => {
    const view = buildStatusView(
      {
        payments: [],
        budgets: [
          {
            name: "daily",
            perRequestMax: 5000n,
            reserved: 0n,
            limits: [{ period: "day", limit: 100n, used: 10n, resetsAtMs: at("2026-03-16T00:00:00Z") }],
          },
        ],
      },
      () => at("2026-03-15T12:00:00Z"),
    );
    expect(view.budgets[0]).toMatchObject({
      name: "daily",
      perRequestMax: 5000n,
      limits: [{ resetsAtMs: at("2026-03-16T00:00:00Z") }],
    });
    expect(view.breakers).toBeUndefined();
    expect(view.killSwitch).toBeUndefined();
    expect(view.generatedAtMs).toBe(at("2026-03-15T12:00:00Z"));
  });
});

describe("CA fingerprint", () => {
  it("is SHA-256 of the DER, colon-separated, as Node's X509Certificate reports it", async () => {
    const ca = await createCertificateAuthority("stoka-proxy test CA");
    const der = derFromPem(ca.certPem);
    expect(der).not.toBeNull();
    const fp = sha256Fingerprint(der as Uint8Array);
    expect(fp).toBe(new X509Certificate(ca.certPem).fingerprint256);
    expect(fp).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it("finds no certificate in other text", () => {
    expect(derFromPem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")).toBeNull();
    expect(derFromPem("")).toBeNull();
  });
});
