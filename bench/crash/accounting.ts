/**
 * The crash test's arithmetic, pure: from every ledger row the proxies wrote and every charge
 * the emulator made, how many payments were signed, what was charged, how far over the budget
 * (must be 0), and whether the ledger accounts for every charge exactly once (docs/operations.md,
 * The crash test).
 */
export interface LedgerRowView {
  paymentId: string;
  state: string;
  amount: bigint;
  tx: string | null;
}

export interface ChargeView {
  tx: string;
  amount: bigint;
}

export interface Accounting {
  /** Payments with a `sent` row: a payment header was produced and handed on. */
  signed: number;
  charged: bigint;
  charges: number;
  /** charged − limit when positive, else 0. */
  overLimit: bigint;
  settled: bigint;
  /** Indeterminate, or still reserved/sent (the next start marks those indeterminate). */
  indeterminate: bigint;
  indeterminateCount: number;
  /** Of the indeterminate payments, how many the emulator did charge. */
  indeterminateCharged: number;
  /** Why "ledger = charges" does not hold; empty when it holds. */
  ledgerProblems: string[];
}

const COUNTED_OPEN = new Set(["indeterminate", "reserved", "sent"]);

/**
 * "ledger = charges" holds when every charge is under exactly one payment of the ledger whose
 * latest state counts it as spent (settled, or indeterminate and kept counted), and every
 * settled payment was charged: settled ≤ charged ≤ settled + indeterminate follows.
 */
export function account(
  rows: readonly LedgerRowView[],
  charges: readonly ChargeView[],
  limit: bigint,
): Accounting {
  const latest = new Map<string, LedgerRowView>();
  const txOf = new Map<string, string>();
  const paymentsOfTx = new Map<string, Set<string>>();
  const sent = new Set<string>();
  for (const r of rows) {
    latest.set(r.paymentId, r);
    if (r.state === "sent") sent.add(r.paymentId);
    if (r.tx) {
      txOf.set(r.paymentId, r.tx);
      paymentsOfTx.set(r.tx, (paymentsOfTx.get(r.tx) ?? new Set()).add(r.paymentId));
    }
  }
  const chargedTx = new Map(charges.map((c) => [c.tx, c]));
  const problems: string[] = [];
  for (const c of charges) {
    const ids = [...(paymentsOfTx.get(c.tx) ?? [])];
    if (ids.length !== 1) {
      problems.push(
        ids.length === 0
          ? `charge ${short(c.tx)} is in no ledger row`
          : `charge ${short(c.tx)} is under ${ids.length} payments`,
      );
      continue;
    }
    const state = latest.get(ids[0] as string)?.state;
    if (state !== "settled" && !COUNTED_OPEN.has(state ?? ""))
      problems.push(
        `charge ${short(c.tx)} is on a payment the ledger says ${state} (released from the budget)`,
      );
  }
  let settled = 0n;
  let indeterminate = 0n;
  let indeterminateCount = 0;
  let indeterminateCharged = 0;
  for (const [id, r] of latest) {
    const tx = txOf.get(id);
    if (r.state === "settled") {
      settled += r.amount;
      if (!tx || !chargedTx.has(tx))
        problems.push(`payment ${short(id)} is settled in the ledger, never charged`);
    } else if (COUNTED_OPEN.has(r.state)) {
      indeterminate += r.amount;
      indeterminateCount += 1;
      if (tx && chargedTx.has(tx)) indeterminateCharged += 1;
    }
  }
  const charged = charges.reduce((s, c) => s + c.amount, 0n);
  if (problems.length === 0 && !(settled <= charged && charged <= settled + indeterminate))
    problems.push(
      `charged ${charged} is outside settled ${settled} .. settled + indeterminate ${settled + indeterminate}`,
    );
  return {
    signed: sent.size,
    charged,
    charges: charges.length,
    overLimit: charged > limit ? charged - limit : 0n,
    settled,
    indeterminate,
    indeterminateCount,
    indeterminateCharged,
    ledgerProblems: problems,
  };
}

/** The table's "ledger = charges" cell. */
export function ledgerVerdict(a: Accounting): string {
  if (a.ledgerProblems.length > 0) return `VIOLATED: ${a.ledgerProblems.slice(0, 2).join("; ")}`;
  if (a.indeterminateCount === 0) return "holds";
  return `holds (${a.indeterminateCount} indeterminate, ${a.indeterminateCharged} charged: counted as spent)`;
}

const short = (id: string) => (id.length > 12 ? `${id.slice(0, 10)}…` : id);
