import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { RedisBudgetStore } from "../../src/budget/redis-store.js";
import { SqliteBudgetStore } from "../../src/budget/sqlite-store.js";
import type { BudgetStore } from "../../src/budget/store.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { bucketStart, matchingBudgets, perRequestCap } from "../../src/budget/budget.js";
import { globMatches } from "../../src/parsing/glob.js";
import type { Budget, BudgetLimit } from "../../src/config/config.js";

const at = (iso: string) => Date.parse(iso);

describe("UTC calendar buckets", () => {
  it.each([
    ["hour", "2026-11-28T10:59:59.999Z", "2026-11-28T10:00:00.000Z"],
    ["day", "2026-11-28T23:59:59.999Z", "2026-11-28T00:00:00.000Z"],
    ["week (Monday start)", "2026-11-29T12:00:00Z", "2026-11-23T00:00:00.000Z"],
    ["week on a Monday", "2026-11-23T00:00:00Z", "2026-11-23T00:00:00.000Z"],
    ["month", "2026-11-30T23:00:00Z", "2026-11-01T00:00:00.000Z"],
  ] as const)("%s", (unit, now, start) => {
    const u = unit.split(" ")[0] as "hour" | "day" | "week" | "month";
    expect(new Date(bucketStart(u, at(now))).toISOString()).toBe(start);
  });
});

describe("budget matching", () => {
  const budgets: Budget[] = [
    { name: "all", match: {}, limits: [] },
    { name: "stores", match: { routes: ["store"] }, perRequestMax: 5000n, limits: [] },
    {
      name: "tmp",
      match: { paths: ["/v1/retrieve/tmp/**"], methods: ["get"] },
      perRequestMax: 2000n,
      limits: [],
    },
    { name: "other-host", match: { hosts: ["api.stoka.space"] }, limits: [] },
    { name: "team-a", match: { clients: ["team-a"] }, limits: [] },
  ];
  const subject = {
    host: "test.api.stoka.space",
    method: "GET",
    path: "/v1/retrieve/tmp/a/b",
    route: "retrieve",
    client: "default",
  };

  it("matches by route, path glob, method, host and client", () => {
    expect(matchingBudgets(budgets, subject).map((b) => b.name)).toEqual(["all", "tmp"]);
    expect(
      matchingBudgets(budgets, { ...subject, method: "POST", path: "/v1/store", route: "store" }).map(
        (b) => b.name,
      ),
    ).toEqual(["all", "stores"]);
    expect(matchingBudgets(budgets, { ...subject, client: "team-a" }).map((b) => b.name)).toContain("team-a");
  });

  it.each(["API.Stoka.Space", "api.stoka.space.", "API.STOKA.SPACE."])(
    "a budget's host %s matches api.stoka.space in any spelling",
    (spelling) => {
      const hosts = [{ name: "h", match: { hosts: [spelling] }, limits: [] }];
      expect(matchingBudgets(hosts, { ...subject, host: "api.stoka.space" }).map((b) => b.name)).toEqual([
        "h",
      ]);
      expect(matchingBudgets(hosts, { ...subject, host: "api.stoka.space.evil" })).toEqual([]);
    },
  );

  it("the lowest per-request cap wins", () => {
    expect(perRequestCap(matchingBudgets(budgets, subject))).toEqual({ cap: 2000n, budget: "tmp" });
    expect(perRequestCap([budgets[0] as Budget])).toBeUndefined();
  });

  it.each([
    ["/v1/retrieve/*", "/v1/retrieve/a", true],
    ["/v1/retrieve/*", "/v1/retrieve/a/b", false],
    ["/v1/**", "/v1/retrieve/a/b", true],
    ["/v1/store", "/v1/store", true],
    ["/v1/sto.e", "/v1/store", false],
  ])("glob %s on %s → %s", (glob, path, ok) => {
    expect(globMatches(glob, path)).toBe(ok);
  });
});

/**
 * The same table against both real engines: SQLite (in memory) and Redis (the one on
 * 127.0.0.1:6379, under a prefix of this run's own, cleaned up afterwards).
 */
const RUN = `stoka-test-${process.pid}-${Date.now()}`;
const stores: { name: string; make: () => Promise<BudgetStore> }[] = [
  { name: "sqlite", make: async () => new SqliteBudgetStore(openDatabase(":memory:")) },
  {
    name: "redis",
    make: async () => {
      const s = new RedisBudgetStore({
        url: "redis://127.0.0.1:6379",
        prefix: `${RUN}:${Math.random().toString(36).slice(2)}`,
      });
      await s.ready();
      return s;
    },
  },
];
const opened: BudgetStore[] = [];
afterAll(async () => {
  const redis = new Redis("redis://127.0.0.1:6379");
  const keys = await redis.keys(`${RUN}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  for (const s of opened) await s.close();
});

describe.each(stores)("budget engine: $name", ({ make }) => {
  const day: Budget = {
    name: "d",
    match: {},
    limits: [{ period: { kind: "calendar", unit: "day" }, amount: 3000n }],
  };
  const month: Budget = {
    name: "m",
    match: {},
    limits: [{ period: { kind: "calendar", unit: "month" }, amount: 4000n }],
  };
  const lease = 60_000;
  let s: BudgetStore;
  beforeEach(async () => {
    s = await make();
    opened.push(s);
  });
  const reserve = (id: string, budgets: Budget[], amount: bigint, nowMs: number) =>
    s.reserve({ paymentId: id, budgets, amount, nowMs, leaseUntilMs: nowMs + lease });

  it("reserves across every budget at once, or not at all", async () => {
    const now = at("2026-11-28T12:00:00Z");
    expect((await reserve("p1", [day, month], 1400n, now)).ok).toBe(true);
    expect((await reserve("p2", [day, month], 1400n, now)).ok).toBe(true);
    const third = await reserve("p3", [day, month], 1400n, now);
    expect(third).toEqual({
      ok: false,
      denial: { budget: "d", period: "day", limit: 3000n, spent: 2800n, price: 1400n },
    });
    expect(await s.used(month, month.limits[0] as BudgetLimit, now)).toBe(2800n); // the refused one left no trace
    expect(await s.reserved(day)).toBe(2800n);
  });

  it("release gives money back, never below zero; settled and indeterminate stay spent", async () => {
    const now = at("2026-11-28T12:00:00Z");
    await reserve("a", [day], 1000n, now);
    await reserve("b", [day], 1000n, now);
    await reserve("c", [day], 1000n, now);
    await s.commit("a");
    await s.markIndeterminate("b");
    await s.release("c");
    await s.release("c"); // twice: no effect
    await s.release("a"); // releasing a settled payment does nothing
    expect(await s.used(day, day.limits[0] as BudgetLimit, now)).toBe(2000n);
    expect(await s.reserved(day)).toBe(0n);
  });

  it("a day budget resets at 00:00 UTC; a month budget does not", async () => {
    await reserve("x", [day, month], 2500n, at("2026-11-28T23:59:59Z"));
    const next = at("2026-11-29T00:00:00Z");
    expect(await s.used(day, day.limits[0] as BudgetLimit, next)).toBe(0n);
    expect(await s.used(month, month.limits[0] as BudgetLimit, next)).toBe(2500n);
    const r = await reserve("y", [day, month], 2000n, next);
    expect(!r.ok && r.denial.budget).toBe("m");
    expect(await s.used(month, month.limits[0] as BudgetLimit, at("2026-12-01T00:00:00Z"))).toBe(0n);
  });

  it("rolling windows forget payments older than the window", async () => {
    const rolling: Budget = {
      name: "r",
      match: {},
      limits: [{ period: { kind: "rolling", seconds: 60 }, amount: 1000n }],
    };
    const t0 = at("2026-11-28T12:00:00Z");
    expect((await reserve("1", [rolling], 1000n, t0)).ok).toBe(true);
    expect((await reserve("2", [rolling], 1n, t0 + 59_000)).ok).toBe(false);
    expect((await reserve("3", [rolling], 1000n, t0 + 60_001)).ok).toBe(true);
  });

  it("an expired lease turns the reservation indeterminate: still counted, never freed", async () => {
    const now = at("2026-11-28T12:00:00Z");
    await reserve("slow", [day], 1000n, now);
    expect(await s.expireLeases(now + lease - 1)).toEqual([]);
    expect(await s.expireLeases(now + lease)).toEqual(["slow"]);
    await s.release("slow"); // too late: indeterminate stays spent
    expect(await s.used(day, day.limits[0] as BudgetLimit, now)).toBe(1000n);
    expect(await s.reserved(day)).toBe(0n);
  });

  it("200 concurrent reservations that fit K=37 exactly: 37 succeed, spent = 37 × price", async () => {
    const b: Budget = {
      name: "k",
      match: {},
      limits: [{ period: { kind: "calendar", unit: "day" }, amount: 37n * 1400n }],
    };
    const now = Date.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => reserve(`p${i}`, [b], 1400n, now)),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(37);
    expect(await s.used(b, b.limits[0] as BudgetLimit, now)).toBe(37n * 1400n);
  });
});
