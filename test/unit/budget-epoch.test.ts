import { describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { decideEpoch, parseEpochRecord } from "../../src/budget/epoch.js";
import type { EpochRecord, LedgerFacts, RememberedEpoch } from "../../src/budget/epoch.js";
import { budgetsForRow, earliestCurrentStart, hostCandidates } from "../../src/budget/ledger-spend.js";
import { planRestore } from "../../src/budget/restore-plan.js";
import type { RestorePayment } from "../../src/budget/restore-plan.js";
import type { PaidHost } from "../../src/config/config.js";

const at = (iso: string) => Date.parse(iso);

const record = (over: Partial<EpochRecord> = {}): EpochRecord => ({
  id: "E2",
  origin: "init",
  atMs: 0,
  gen: 0,
  lost: null,
  ledgers: [],
  ...over,
});
const remembered = (id: string): RememberedEpoch => ({ id, origin: "init" });
const noPayments: LedgerFacts = { id: "L", current: [] };
const payments = (...firstSeqs: number[]): LedgerFacts => ({
  id: "L",
  current: firstSeqs.map((s) => ({ paymentId: `p${s}`, firstSeq: s })),
});

describe("decideEpoch: every case fails closed", () => {
  it.each<[string, EpochRecord | null, RememberedEpoch | null, LedgerFacts, string, string?]>([
    ["fresh deployment: nothing anywhere → init", null, null, noPayments, "init"],
    [
      "Redis empty, replica remembers an epoch → lost, tombstone",
      null,
      remembered("E1"),
      noPayments,
      "lost",
      "tombstone",
    ],
    [
      "Redis empty, nothing remembered but ledger has current spend → lost, tombstone",
      null,
      null,
      payments(3),
      "lost",
      "tombstone",
    ],
    [
      "the record is a tombstone → lost",
      record({ id: null, lost: "gone" }),
      remembered("E1"),
      noPayments,
      "lost",
      "none",
    ],
    [
      "the record is marked lost → lost even for a fresh replica",
      record({ lost: "gone" }),
      null,
      noPayments,
      "lost",
      "none",
    ],
    ["same epoch → use", record({ id: "E1" }), remembered("E1"), payments(1), "use"],
    ["a new replica joins a running epoch → adopt", record(), null, noPayments, "adopt"],
    [
      "another replica's init while this one remembers E1 → lost, flag",
      record(),
      remembered("E1"),
      noPayments,
      "lost",
      "flag",
    ],
    [
      "an init epoch that does not count this ledger's spend → lost, flag",
      record(),
      null,
      payments(2),
      "lost",
      "flag",
    ],
    [
      "operator reset → adopt whatever the ledger holds",
      record({ origin: "reset" }),
      remembered("E1"),
      payments(9),
      "adopt",
    ],
    [
      "restore that read this ledger to its end → adopt",
      record({ origin: "restore", ledgers: [{ id: "L", head: 9 }] }),
      remembered("E1"),
      payments(4, 9),
      "adopt",
    ],
    [
      "restore that missed this ledger's newest payment → lost, flag",
      record({ origin: "restore", ledgers: [{ id: "L", head: 8 }] }),
      remembered("E1"),
      payments(4, 9),
      "lost",
      "flag",
    ],
    [
      "restore without this ledger, which has current spend → lost, flag",
      record({ origin: "restore", ledgers: [{ id: "other", head: 100 }] }),
      remembered("E1"),
      payments(1),
      "lost",
      "flag",
    ],
    [
      "restore without this ledger, which has no current spend → adopt",
      record({ origin: "restore", ledgers: [{ id: "other", head: 100 }] }),
      remembered("E1"),
      noPayments,
      "adopt",
    ],
  ])("%s", (_name, rec, mem, facts, action, mark) => {
    const d = decideEpoch(rec, mem, () => facts);
    expect(d.action).toBe(action);
    if (mark) expect(d).toMatchObject({ mark });
  });

  it("reads the ledger only when the decision needs it", () => {
    let reads = 0;
    const facts = () => {
      reads += 1;
      return noPayments;
    };
    decideEpoch(record({ id: "E1" }), remembered("E1"), facts);
    decideEpoch(null, remembered("E1"), facts);
    expect(reads).toBe(0);
  });

  it("parses the record's fields; a broken ledger list includes nobody", () => {
    expect(parseEpochRecord(false, [null, null, null, null, null, null])).toBeNull();
    expect(parseEpochRecord(true, ["E", "restore", "5", "7", null, '[{"id":"L","head":3}]'])).toEqual({
      id: "E",
      origin: "restore",
      atMs: 5,
      gen: 7,
      lost: null,
      ledgers: [{ id: "L", head: 3 }],
    });
    expect(parseEpochRecord(true, [null, "lost", null, null, "why", "nope"])).toMatchObject({
      id: null,
      lost: "why",
      ledgers: [],
    });
  });
});

const emulator = new URL("http://127.0.0.1:4000");
const paidHosts: PaidHost[] = [
  { host: "test.api.stoka.space", upstream: emulator, payTo: [] },
  { host: "api.stoka.space", upstream: emulator, payTo: [] },
  { host: "other.example", upstream: new URL("https://other.example"), payTo: [] },
];
const gateway = new URL("http://gw.internal:8080/base");

describe("ledger rows → the budgets they counted against", () => {
  it("host candidates: every paid host on the row's upstream, the gateway, or the URL's host", () => {
    expect(hostCandidates(new URL("http://127.0.0.1:4000/v1/store"), paidHosts, gateway)).toEqual([
      "test.api.stoka.space",
      "api.stoka.space",
    ]);
    expect(hostCandidates(new URL("https://other.example/v1/store"), paidHosts, gateway)).toEqual([
      "other.example",
    ]);
    expect(hostCandidates(new URL("http://gw.internal:8080/base/v1/store"), paidHosts, gateway)).toEqual([
      "gw.internal",
    ]);
    expect(hostCandidates(new URL("http://[::1]:9/x"), paidHosts, gateway)).toEqual(["::1"]);
  });

  const b = (name: string, match: Budget["match"]): Budget => ({
    name,
    match,
    limits: [{ period: { kind: "calendar", unit: "day" }, amount: 1n }],
  });
  const budgets = [
    b("all", {}),
    b("prod-host", { hosts: ["API.stoka.space"] }),
    b("other-host", { hosts: ["other.example"] }),
    b("stores", { routes: ["store"], methods: ["post"] }),
    b("retrieve-path", { paths: ["/v1/retrieve/*"] }),
    b("ci", { clients: ["ci"] }),
  ];
  const scope = { budgets, paidHosts, gatewayUpstream: gateway };
  it.each([
    [
      "a store via the emulator upstream (either sandbox host)",
      { url: "http://127.0.0.1:4000/v1/store", method: "POST", route: "store", client: "default" },
      ["all", "prod-host", "stores"],
    ],
    [
      "a retrieve by the ci client",
      { url: "https://other.example/v1/retrieve/a?x=1", method: "GET", route: "retrieve", client: "ci" },
      ["all", "other-host", "retrieve-path", "ci"],
    ],
    [
      "a row whose url is not a URL counts wherever method, route and client fit, any host or path",
      { url: "::", method: "POST", route: "store", client: "default" },
      ["all", "prod-host", "other-host", "stores", "retrieve-path"],
    ],
  ])("%s", (_name, row, names) => {
    expect(budgetsForRow(row, scope).map((x) => x.name)).toEqual(names);
  });

  it("the earliest current period start", () => {
    const now = at("2026-11-18T15:30:00Z");
    const month: Budget = {
      name: "m",
      match: {},
      limits: [{ period: { kind: "calendar", unit: "month" }, amount: 1n }],
    };
    const roll: Budget = {
      name: "r",
      match: {},
      limits: [{ period: { kind: "rolling", seconds: 60 * 86400 }, amount: 1n }],
    };
    expect(earliestCurrentStart([budgets[0] as Budget], now)).toBe(at("2026-11-18T00:00:00Z"));
    expect(earliestCurrentStart([budgets[0] as Budget, month], now)).toBe(at("2026-11-01T00:00:00Z"));
    expect(earliestCurrentStart([month, roll], now)).toBe(now - 60 * 86_400_000);
    expect(earliestCurrentStart([], now)).toBeNull();
  });
});

describe("planRestore", () => {
  const now = at("2026-11-18T15:30:00Z");
  const budgets: Budget[] = [
    {
      name: "team",
      match: {},
      limits: [
        { period: { kind: "calendar", unit: "day" }, amount: 100_000n },
        { period: { kind: "rolling", seconds: 3600 }, amount: 50_000n },
      ],
    },
    {
      name: "stores",
      match: { routes: ["store"] },
      limits: [{ period: { kind: "calendar", unit: "month" }, amount: 1_000_000n }],
    },
  ];
  const scope = { prefix: "p", budgets, paidHosts, gatewayUpstream: gateway };
  let n = 0;
  const pay = (
    state: RestorePayment["state"],
    amount: bigint,
    startedAtMs: number,
    route = "store",
  ): RestorePayment => ({
    paymentId: `id${++n}`,
    state,
    amount,
    startedAtMs,
    url: "http://127.0.0.1:4000/v1/store",
    method: "POST",
    route,
    client: "default",
  });

  it("settled, indeterminate and open payments count; rejected and failed do not; only current periods", () => {
    const rows = [
      pay("settled", 1000n, now - 60_000),
      pay("indeterminate", 200n, now - 2 * 3600_000), // today, outside the rolling hour
      pay("sent", 30n, now - 1000),
      pay("reserved", 4n, now - 1000),
      pay("rejected", 50_000n, now - 1000),
      pay("failed", 60_000n, now - 1000),
      pay("settled", 7000n, at("2026-11-17T23:59:59Z")), // yesterday: this month only
      pay("settled", 9n, at("2026-10-31T23:00:00Z")), // last month: nothing current
      pay("settled", 100n, now - 1000, "retrieve"), // not a store: team only
    ];
    const plan = planRestore([...rows, rows[0] as RestorePayment], scope, now, 60_000);
    expect(plan.counted).toBe(7);
    expect(Object.fromEntries(plan.limits.map((l) => [`${l.budget}/${l.period}`, l.used]))).toEqual({
      "team/day": 1000n + 200n + 30n + 4n + 100n,
      "team/rolling_3600s": 1000n + 30n + 4n + 100n,
      "stores/month": 1000n + 200n + 30n + 4n + 7000n,
    });
    expect(plan.reservations.map((r) => [r.state, r.amount])).toEqual([
      ["indeterminate", 200n],
      ["reserved", 30n],
      ["reserved", 4n],
    ]);
    expect(plan.reservations[1]?.keys.map((k) => k[0])).toEqual(["c", "r", "c"]);
    expect(plan.reservations[0]?.keys.map((k) => k[0])).toEqual(["c", "c"]); // out of the rolling hour
    expect(plan.reserved).toEqual(
      new Map([
        ["team", 34n],
        ["stores", 34n],
      ]),
    );
    // Every counter written is marked in the epoch record (rolling windows never expire).
    expect([...plan.marks.values()].filter((v) => v === 0)).toHaveLength(1);
    expect(plan.marks.size).toBe(3);
  });
});
