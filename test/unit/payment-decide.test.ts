import { describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { ERROR_STATUS } from "../../src/errors.js";
import {
  afterReservation,
  decide,
  readChallenge,
  refusalBody,
  refusalRecord,
} from "../../src/payment/decide.js";
import type { DecisionInput, Refusal, RefusalCode, Reservation } from "../../src/payment/decide.js";
import { parseChallenge } from "../../src/x402/challenge.js";
import type { Challenge } from "../../src/x402/challenge.js";

/** The payment decision as tables: every refusal code, and the order in which they are checked. */
const PAYEE = "GAPRO7H3JNM4LVR33IDR5PYNQ35TJJXWJW65HU267RIPJIUUGEPWCAXB";
const OTHER_PAYEE = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5";
const ASSET = "CBIELTK6YBZJU5UP2WWQEUCYKLPU6AUNZ2BQ4WWFEIE3USCIHMXQDAMA";
const requirement = {
  scheme: "exact",
  network: "stellar:testnet",
  asset: ASSET,
  payTo: PAYEE,
  maxAmountRequired: "1400",
  maxTimeoutSeconds: 120,
  extra: { areFeesSponsored: true },
};
const BODY = JSON.stringify({ x402Version: 2, error: "payment required", accepts: [requirement] });

function challenge(body = BODY): Challenge {
  const parsed = parseChallenge({}, body);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.challenge;
}

const TERMS = { network: "stellar:testnet", asset: ASSET, minTimeoutSeconds: 10, maxTimeoutSeconds: 600 };
const DAY: Budget = {
  name: "day",
  match: {},
  limits: [{ period: { kind: "calendar", unit: "day" }, amount: 10_000n }],
};
const capped = (name: string, cap: bigint): Budget => ({ ...DAY, name, perRequestMax: cap });
const SIGNER = { name: "the signer" };

const input = (change: Partial<DecisionInput<typeof SIGNER>> = {}): DecisionInput<typeof SIGNER> => ({
  challenge: challenge(),
  host: "test.api.stoka.space",
  payees: [PAYEE],
  terms: TERMS,
  budgets: [DAY],
  signer: SIGNER,
  ...change,
});

const refusal = (r: { kind: string }): Refusal => {
  if (r.kind !== "refuse") throw new Error(`expected a refusal, got ${r.kind}`);
  return r as Refusal;
};

describe("readChallenge", () => {
  it.each([
    ["not JSON", "nope"],
    ["no x402Version", JSON.stringify({ accepts: [requirement] })],
    ["nothing payable", JSON.stringify({ x402Version: 2, accepts: [{ scheme: "exact" }] })],
  ])("%s → challenge_unreadable with the parser's reason", (_name, body) => {
    const parsed = parseChallenge({}, body);
    const r = refusal(readChallenge(parsed));
    expect(r).toEqual({
      kind: "refuse",
      code: "challenge_unreadable",
      reason: parsed.ok ? "" : parsed.reason,
      extra: {},
    });
  });

  it("a readable 402 goes on to the decision", () => {
    expect(readChallenge(parseChallenge({}, BODY))).toEqual({ kind: "readable", challenge: challenge() });
  });
});

describe("decide: each refusal", () => {
  it.each<[string, Partial<DecisionInput<typeof SIGNER>>, RefusalCode, RegExp, Record<string, unknown>]>([
    [
      "no payee (none configured, the manifest named none)",
      { payees: [] },
      "payee_unknown",
      /no payee is configured for test\.api\.stoka\.space/,
      {},
    ],
    [
      "the only requirement pays someone else",
      { payees: [OTHER_PAYEE] },
      "terms_rejected",
      /payee .* is not an allowed payTo/,
      {},
    ],
    [
      "the requirement's timeout is outside the bounds",
      { terms: { ...TERMS, maxTimeoutSeconds: 60 } },
      "terms_rejected",
      /maxTimeoutSeconds 120 is outside \[10, 60\]/,
      {},
    ],
    ["no budget covers it", { budgets: [] }, "no_budget", /no budget covers this request/, { price: "1400" }],
    [
      "the price is above the lowest cap",
      { budgets: [capped("wide", 5000n), capped("narrow", 1000n)] },
      "price_above_cap",
      /price 0\.00014 USDC is above the per-request cap 0\.0001 USDC of budget narrow/,
      { price: "1400", budget: { name: "narrow", per_request_max: "1000" } },
    ],
    ["no wallet", { signer: undefined }, "no_signer", /no wallet is configured/, { price: "1400" }],
  ])("%s → %s", (_name, change, code, reason, extra) => {
    const r = refusal(decide(input(change)));
    expect(r.code).toBe(code);
    expect(r.reason).toMatch(reason);
    expect(r.extra).toEqual(extra);
    expect(r.budgetDenied).toBeUndefined();
  });

  it("everything in order → pay the requirement at its price, in the matching budgets, with the signer", () => {
    const budgets = [DAY, capped("exact", 1400n)];
    expect(decide(input({ budgets }))).toEqual({
      kind: "pay",
      challenge: challenge(),
      requirement: challenge().accepts[0],
      price: 1400n,
      budgets,
      signer: SIGNER,
    });
  });

  it("the first requirement that passes the terms is the one paid", () => {
    const body = JSON.stringify({
      x402Version: 2,
      accepts: [
        { ...requirement, payTo: OTHER_PAYEE },
        { ...requirement, amount: "1300" },
      ],
    });
    const d = decide(input({ challenge: challenge(body) }));
    expect(d.kind === "pay" && [d.price, d.requirement.payTo]).toEqual([1300n, PAYEE]);
  });
});

describe("afterReservation", () => {
  const payment = { id: "open payment" };
  it.each<[string, Reservation<typeof payment>, RefusalCode | "reserved"]>([
    ["reserved", { kind: "reserved", payment }, "reserved"],
    ["the store cannot be checked", { kind: "unavailable", reason: "Redis is down" }, "budget_unavailable"],
    [
      "a limit is full",
      { kind: "denied", denial: { budget: "day", period: "day", limit: 2000n, spent: 1400n, price: 1400n } },
      "budget_exceeded",
    ],
  ])("%s → %s", (_name, reservation, expected) => {
    const r = afterReservation(reservation, 1400n);
    expect(r.kind === "refuse" ? r.code : r.kind).toBe(expected);
  });

  it("reserved hands the open payment on", () => {
    expect(afterReservation({ kind: "reserved", payment }, 1400n)).toEqual({ kind: "reserved", payment });
  });

  it("budget_unavailable says why, with the price", () => {
    expect(afterReservation({ kind: "unavailable", reason: "Redis is down" }, 1400n)).toEqual({
      kind: "refuse",
      code: "budget_unavailable",
      reason: "budgets cannot be checked, so nothing is paid: Redis is down",
      extra: { price: "1400" },
    });
  });

  it("budget_exceeded names the budget, its period, limit and use (and counts the denial)", () => {
    const denial = { budget: "day", period: "day", limit: 2000n, spent: 1400n, price: 1400n };
    expect(afterReservation({ kind: "denied", denial }, 1400n)).toEqual({
      kind: "refuse",
      code: "budget_exceeded",
      reason: "budget day (day) allows 0.0002 USDC, 0.00014 USDC is already used, the price is 0.00014 USDC",
      extra: { price: "1400", budget: { name: "day", period: "day", limit: "2000", spent: "1400" } },
      budgetDenied: "day",
    });
  });
});

/**
 * The steps as paid-exchange.ts runs them, over facts that each may fail; the first failing
 * check in the documented order wins.
 */
interface Facts {
  readable: boolean;
  payees: boolean;
  terms: boolean;
  budget: boolean;
  underCap: boolean;
  signer: boolean;
  store: "up" | "down";
  room: boolean;
}
function firstRefusal(f: Facts): RefusalCode | "paid" {
  const read = readChallenge(parseChallenge({}, f.readable ? BODY : "{"));
  if (read.kind === "refuse") return read.code;
  const d = decide({
    challenge: read.challenge,
    host: "h",
    payees: f.payees ? [f.terms ? PAYEE : OTHER_PAYEE] : [],
    terms: TERMS,
    budgets: f.budget ? [f.underCap ? DAY : capped("cap", 1n)] : [],
    signer: f.signer ? SIGNER : undefined,
  });
  if (d.kind === "refuse") return d.code;
  const denial = { budget: "day", period: "day", limit: 1n, spent: 0n, price: d.price };
  const reservation: Reservation<null> =
    f.store === "down"
      ? { kind: "unavailable", reason: "down" }
      : f.room
        ? { kind: "reserved", payment: null }
        : { kind: "denied", denial };
  const r = afterReservation(reservation, d.price);
  return r.kind === "refuse" ? r.code : "paid";
}

describe("the order of the refusals", () => {
  const none: Facts = {
    readable: false,
    payees: false,
    terms: false,
    budget: false,
    underCap: false,
    signer: false,
    store: "down",
    room: false,
  };
  // Each row fixes one more fact than the one above it; everything after it still fails.
  it.each<[Partial<Facts>, RefusalCode | "paid"]>([
    [{}, "challenge_unreadable"],
    [{ readable: true }, "payee_unknown"],
    [{ readable: true, payees: true }, "terms_rejected"],
    [{ readable: true, payees: true, terms: true }, "no_budget"],
    [{ readable: true, payees: true, terms: true, budget: true }, "price_above_cap"],
    [{ readable: true, payees: true, terms: true, budget: true, underCap: true }, "no_signer"],
    [
      { readable: true, payees: true, terms: true, budget: true, underCap: true, signer: true },
      "budget_unavailable",
    ],
    [
      { readable: true, payees: true, terms: true, budget: true, underCap: true, signer: true, store: "up" },
      "budget_exceeded",
    ],
    [
      {
        readable: true,
        payees: true,
        terms: true,
        budget: true,
        underCap: true,
        signer: true,
        store: "up",
        room: true,
      },
      "paid",
    ],
  ])("%j → %s", (facts, expected) => {
    expect(firstRefusal({ ...none, ...facts })).toBe(expected);
  });

  it("every refusal code answers 402", () => {
    const codes: RefusalCode[] = [
      "challenge_unreadable",
      "payee_unknown",
      "terms_rejected",
      "no_budget",
      "price_above_cap",
      "no_signer",
      "budget_unavailable",
      "budget_exceeded",
    ];
    for (const code of codes) expect(ERROR_STATUS[code]).toBe(402);
  });
});

describe("what a refusal writes and answers", () => {
  const r: Refusal = {
    kind: "refuse",
    code: "budget_exceeded",
    reason: "full",
    extra: { price: "1400" },
    budgetDenied: "day",
  };

  it("the record: refused, the code, the reason, the full budget", () => {
    expect(refusalRecord(r)).toEqual({
      outcome: "refused",
      errorCode: "budget_exceeded",
      reason: "full",
      budgetDenied: "day",
    });
    const { budgetDenied: _b, ...noBudget } = r;
    expect(refusalRecord(noBudget)).not.toHaveProperty("budgetDenied");
  });

  it("the body keeps the upstream's 402 JSON (accepts included) and adds proxy: {code, reason, …}", () => {
    const out = JSON.parse(refusalBody(Buffer.from(BODY), r).toString()) as Record<string, unknown>;
    expect(out).toEqual({
      ...(JSON.parse(BODY) as object),
      proxy: { code: "budget_exceeded", reason: "full", price: "1400" },
    });
  });

  it.each([
    ["not JSON", "nope"],
    ["a JSON array", "[1,2]"],
    ["a JSON string", '"x"'],
    ["an object nested too deep to keep", `${'{"a":'.repeat(40)}1${"}".repeat(40)}`],
  ])("a body that is %s is dropped: the answer is ours alone", (_name, body) => {
    expect(JSON.parse(refusalBody(Buffer.from(body), r).toString())).toEqual({
      proxy: { code: "budget_exceeded", reason: "full", price: "1400" },
    });
  });
});
