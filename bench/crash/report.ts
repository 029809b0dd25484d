import { ledgerVerdict } from "./accounting.js";
import { PRICE } from "./load.js";
import type { ScenarioResult } from "./scenarios.js";

/** The crash test's table: one row per scenario, the invariants in the last columns. */
export function crashTable(results: readonly ScenarioResult[], replicas: number): string {
  const head = [
    "scenario",
    "requests",
    "signed",
    "charged upstream",
    "budget limit",
    "over the limit",
    "ledger = charges",
    "time",
  ];
  const rows = results.map((r) => {
    const a = r.accounting;
    return [
      r.title.replace(/\bN\b/, String(replicas)),
      String(r.requests),
      String(a.signed),
      `${a.charges} (${a.charged})`,
      `${r.limit / PRICE} (${r.limit})`,
      a.overLimit === 0n ? "0" : `${a.overLimit} OVER`,
      ledgerVerdict(a),
      `${(r.ms / 1000).toFixed(1)} s`,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

/** Under the table: what each load saw, and every broken invariant by scenario. */
export function crashDetails(results: readonly ScenarioResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    out.push(`${r.id}: ${r.notes.join("; ")}`);
    for (const p of r.problems) out.push(`  FAIL ${p}`);
  }
  return out.join("\n");
}
