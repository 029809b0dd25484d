import type { BenchResults } from "./results.js";
import type { Summary } from "./measure.js";
import { ratio } from "./stats.js";

/**
 * The targets stoka-proxy is measured against, each checked against this run's numbers.
 * Pure: results in, rows out. A target whose numbers this run did not produce is `n/a`, with
 * the reason.
 */
export type Status = "PASS" | "FAIL" | "n/a";

export interface TargetRow {
  target: string;
  result: string;
  status: Status;
}

const fmt = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : "—");

function level(results: BenchResults, id: string, conns: number, name: string): Summary | undefined {
  return results.throughput
    .find((t) => t.id === id)
    ?.levels.find((l) => l.conns === conns)
    ?.summaries.find((s) => s.contender === name);
}

function levels(results: BenchResults, id: string): number[] {
  return results.throughput.find((t) => t.id === id)?.levels.map((l) => l.conns) ?? [];
}

function check(ok: boolean | undefined): Status {
  return ok === undefined ? "n/a" : ok ? "PASS" : "FAIL";
}

/** stoka-proxy's req/s ≥ factor × peer's, at every measured connection level of a scenario. */
function ratioRows(
  results: BenchResults,
  id: string,
  peer: string,
  factor: number,
  label: string,
): TargetRow[] {
  const conns = levels(results, id);
  if (conns.length === 0)
    return [
      { target: `${label} ≥ ${factor}× ${peer} req/s`, result: `scenario ${id} not run`, status: "n/a" },
    ];
  return conns.map((c) => {
    const s = level(results, id, c, "stoka-proxy");
    const p = level(results, id, c, peer);
    const r = s && p ? ratio(s.rps, p.rps) : Number.NaN;
    return {
      target: `${label}, ${c} conn: ≥ ${factor}× ${peer} req/s`,
      result: s && p ? `${fmt(r)}× (${fmt(s.rps, 0)} vs ${fmt(p.rps, 0)} req/s)` : "not measured",
      status: check(Number.isFinite(r) ? r >= factor : undefined),
    };
  });
}

function cpuRows(results: BenchResults, id: string, maxUs: number, label: string): TargetRow[] {
  return levels(results, id).map((c) => {
    const s = level(results, id, c, "stoka-proxy");
    const v = s?.proxyUsPerReq ?? Number.NaN;
    return {
      target: `${label}, ${c} conn: ≤ ${maxUs} µs proxy CPU/req`,
      result: Number.isFinite(v) ? `${fmt(v, 0)} µs/req` : "not measured",
      status: check(Number.isFinite(v) ? v <= maxUs : undefined),
    };
  });
}

function connRows(results: BenchResults, id: string, label: string): TargetRow[] {
  return levels(results, id).map((c) => {
    const s = level(results, id, c, "stoka-proxy");
    return {
      target: `${label}, ${c} conn: upstream connections ≤ client connections`,
      result: s
        ? `${fmt(s.upstreamConns, 0)} new upstream connections per round for ${c} client connections`
        : "not measured",
      status: check(s ? s.upstreamConns <= c : undefined),
    };
  });
}

export function evaluateTargets(results: BenchResults): TargetRow[] {
  const rows: TargetRow[] = [];
  const mitm = "HTTPS paid host, no 402 (MITM)";
  rows.push(...ratioRows(results, "https-paid", "bare-node-mitm", 1.0, mitm));
  rows.push(...cpuRows(results, "https-paid", 300, mitm));
  rows.push(...connRows(results, "https-paid", mitm));

  const lat = results.latency;
  const added = lat?.addedP50Ms["stoka-proxy"];
  rows.push({
    target: "HTTP paid host, no 402, 1 conn: ≤ 0.2 ms added p50 over direct",
    result: added !== undefined ? `+${fmt(added, 3)} ms` : "scenario latency not run",
    status: check(added !== undefined && Number.isFinite(added) ? added <= 0.2 : undefined),
  });
  rows.push(...connRows(results, "http-paid", "HTTP paid host, no 402"));

  const pass = "Plain HTTP pass-through";
  rows.push(...ratioRows(results, "http-pass", "bare-node", 1.0, pass));
  rows.push(...ratioRows(results, "http-pass", "tinyproxy", 1.5, pass));
  rows.push(...cpuRows(results, "http-pass", 150, pass));

  rows.push(...ratioRows(results, "tunnel", "tinyproxy", 1.0, "Blind CONNECT tunnel"));

  const off = results.official;
  const offNote = "scenario official not run";
  rows.push({
    target: "Paid via proxy, cold: ≤ 1.0× the official in-process client's (@x402/fetch) p50",
    result: off
      ? `${fmt(off.cold.ratio)}× (${fmt(off.cold.proxyMedianMs, 1)} vs ${fmt(off.cold.clientMedianMs, 1)} ms, median of ${off.cold.runs})`
      : offNote,
    status: check(off && Number.isFinite(off.cold.ratio) ? off.cold.ratio <= 1.0 : undefined),
  });
  rows.push({
    target: "Paid via proxy, warm: ≤ 0.75× the official in-process client's p50",
    result: off
      ? `${fmt(off.warm.ratio)}× (${fmt(off.warm.proxyP50Ms, 1)} vs ${fmt(off.warm.clientP50Ms, 1)} ms)`
      : offNote,
    status: check(off && Number.isFinite(off.warm.ratio) ? off.warm.ratio <= 0.75 : undefined),
  });
  rows.push({
    target: "Paid via proxy with quote-ahead: ≤ 0.5× the official in-process client's p50",
    result: off ? off.quoteAhead : offNote,
    status: "n/a",
  });

  const paid = results.paid;
  rows.push({
    target: "≥ 100 paid stores/s at 32 in flight",
    result: paid ? `${fmt(paid.inflight32.paidPerSecond, 1)} paid stores/s` : "scenario paid not run",
    status: check(paid ? paid.inflight32.paidPerSecond >= 100 : undefined),
  });
  rows.push({
    target: "≤ 2 ms proxy CPU per payment (32 in flight)",
    result: paid ? `${fmt(paid.inflight32.proxyCpuMsPerPayment)} ms/payment` : "scenario paid not run",
    status: check(paid ? paid.inflight32.proxyCpuMsPerPayment <= 2 : undefined),
  });

  const mem = results.memory;
  for (const [key, label] of [
    ["idleHttp", "HTTP"],
    ["idleMitm", "MITM TLS"],
  ] as const) {
    const full = mem !== undefined && mem.idleConnections >= 1000;
    rows.push({
      target: `RSS ≤ 150 MB at 1 000 idle ${label} keep-alive connections`,
      result: mem
        ? `${fmt(mem.rssMB[key], 1)} MB at ${mem.idleConnections} connections (idle proxy: ${fmt(mem.rssMB.idle, 1)} MB)`
        : "scenario memory not run",
      status: check(full ? mem.rssMB[key] <= 150 : undefined),
    });
  }
  rows.push({
    target: `No RSS growth between ${mem ? mem.requests[0] : 50_000} and ${mem ? mem.requests[1] : 100_000} requests (≤ +5 %)`,
    result: mem
      ? `${fmt(mem.rssMB.afterFirst, 1)} → ${fmt(mem.rssMB.afterSecond, 1)} MB (${mem.growthMB >= 0 ? "+" : ""}${fmt(mem.growthMB, 1)} MB)`
      : "scenario memory not run",
    // Judged at 50 000 → 100 000 only; the quick run's smaller counts are shown, not judged.
    status: check(
      mem && mem.requests[0] >= 50_000 ? mem.rssMB.afterSecond <= mem.rssMB.afterFirst * 1.05 : undefined,
    ),
  });
  return rows;
}
