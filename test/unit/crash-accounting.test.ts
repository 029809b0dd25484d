import { describe, expect, it } from "vitest";
import { account, ledgerVerdict } from "../../bench/crash/accounting.js";
import type { ChargeView, LedgerRowView } from "../../bench/crash/accounting.js";

/** The crash test's verdicts from ledger rows and emulator charges (bench/crash/accounting.ts). */
const P = 1400n;
const row = (paymentId: string, state: string, tx: string | null = null): LedgerRowView => ({
  paymentId,
  state,
  amount: P,
  tx,
});
const paid = (id: string, final: string, tx = `tx-${id}`) => [
  row(id, "reserved"),
  row(id, "sent", tx),
  row(id, final, tx),
];
const charge = (tx: string): ChargeView => ({ tx, amount: P });

describe("account", () => {
  it.each<[string, LedgerRowView[], ChargeView[], bigint, { signed: number; over: bigint; verdict: RegExp }]>(
    [
      [
        "two settled, two charged",
        [...paid("a", "settled"), ...paid("b", "settled")],
        [charge("tx-a"), charge("tx-b")],
        2n * P,
        { signed: 2, over: 0n, verdict: /^holds$/ },
      ],
      [
        "an indeterminate payment that was charged (kill -9 after sending)",
        [...paid("a", "settled"), ...paid("b", "indeterminate")],
        [charge("tx-a"), charge("tx-b")],
        2n * P,
        { signed: 2, over: 0n, verdict: /^holds \(1 indeterminate, 1 charged/ },
      ],
      [
        "an indeterminate payment never charged (stopped before it reached stoka)",
        [...paid("a", "settled"), row("b", "reserved"), row("b", "indeterminate")],
        [charge("tx-a")],
        2n * P,
        { signed: 1, over: 0n, verdict: /^holds \(1 indeterminate, 0 charged/ },
      ],
      [
        "still sent when read: counted like indeterminate",
        [row("a", "reserved"), row("a", "sent", "tx-a")],
        [charge("tx-a")],
        P,
        { signed: 1, over: 0n, verdict: /^holds \(1 indeterminate, 1 charged/ },
      ],
      [
        "a charge the ledger never saw",
        paid("a", "settled"),
        [charge("tx-a"), charge("tx-z")],
        2n * P,
        { signed: 1, over: 0n, verdict: /^VIOLATED: charge tx-z is in no ledger row/ },
      ],
      [
        "a charge on a payment released as rejected",
        paid("a", "rejected"),
        [charge("tx-a")],
        P,
        { signed: 1, over: 0n, verdict: /ledger says rejected/ },
      ],
      [
        "settled but never charged",
        paid("a", "settled"),
        [],
        P,
        { signed: 1, over: 0n, verdict: /settled in the ledger, never charged/ },
      ],
      [
        "over the limit",
        [...paid("a", "settled"), ...paid("b", "settled")],
        [charge("tx-a"), charge("tx-b")],
        P,
        { signed: 2, over: P, verdict: /^holds$/ },
      ],
      [
        "refused before reserving: nothing in the ledger",
        [],
        [],
        P,
        { signed: 0, over: 0n, verdict: /^holds$/ },
      ],
    ],
  )("%s", (_name, rows, charges, limit, want) => {
    const a = account(rows, charges, limit);
    expect(a.signed).toBe(want.signed);
    expect(a.overLimit).toBe(want.over);
    expect(ledgerVerdict(a)).toMatch(want.verdict);
  });

  it("one charge under two payments is a violation", () => {
    const a = account(
      [...paid("a", "settled", "tx-1"), ...paid("b", "settled", "tx-1")],
      [charge("tx-1")],
      2n * P,
    );
    expect(a.ledgerProblems.join()).toMatch(/under 2 payments/);
  });
});
