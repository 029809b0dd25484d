import type { Contender } from "./contenders.js";
import { logBytes } from "./contenders.js";
import type { BenchEnv } from "./env.js";
import { machineBusySeconds, processCpuSeconds } from "./proc.js";
import { median, minMax } from "./stats.js";
import type { Worker } from "./worker.js";
import { runWrk } from "./wrk.js";
import type { RunResult, RunSpec } from "../workers/loadgen.js";

/**
 * One measured round: the load, and around it the CPU of the proxy, the generator and the
 * upstream (from /proc), the CPU the rest of the machine used meanwhile, and the upstream's
 * new connections. Rounds alternate contenders (A B C A B C …) after a warm-up each, and a
 * contender's numbers are the medians over its rounds.
 */
export interface BenchOptions {
  quick: boolean;
  roundSeconds: number;
  rounds: number;
  warmupSeconds: number;
  conns: number[];
  scenarios: string[];
  contenders: string[] | undefined;
  outDir: string;
  keepTemp: boolean;
}

export interface Bench {
  env: BenchEnv;
  options: BenchOptions;
  upstream: Worker<{ ports: BenchEnv["ports"] }>;
  gen: Worker<Record<string, never>>;
  /** The seed handed to stoka-proxy in the throughput scenarios (fresh per run, never printed). */
  secret: string;
  log(line: string): void;
}

export type UpstreamKey = keyof BenchEnv["ports"];

/** What a round watches on the upstream side: its process, and its TCP connections so far. */
export interface UpstreamProbe {
  pid: number;
  connections(): Promise<number>;
}

export function benchUpstream(bench: Bench, key: UpstreamKey): UpstreamProbe {
  return { pid: bench.upstream.pid, connections: () => upstreamConnections(bench, key) };
}

export interface Load {
  requests: number;
  errors: number;
  errorNote?: string;
  elapsedMs: number;
  latencyUs: { p50: number; p90: number; p99: number };
  /** The generator's CPU when it is not the long-lived Node generator (wrk). */
  genCpuSeconds?: number;
  /** Answers carrying the counted header (X-Stoka-Proxy-Paid), Node generator only. */
  withHeader?: number;
}

export interface Sample {
  contender: string;
  conns: number;
  round: number;
  requests: number;
  errors: number;
  errorNote?: string;
  elapsedS: number;
  rps: number;
  latencyUs: { p50: number; p90: number; p99: number };
  proxyUsPerReq: number;
  proxyCores: number;
  genCores: number;
  upstreamCores: number;
  otherCores: number;
  upstreamConns: number;
  logBytesPerReq: number;
  withHeader: number;
  proxyCpuSeconds: number;
}

export interface Summary {
  contender: string;
  conns: number;
  rounds: number;
  rps: number;
  rpsRange: [number, number];
  p50Us: number;
  p90Us: number;
  p99Us: number;
  proxyUsPerReq: number;
  proxyCores: number;
  genCores: number;
  upstreamCores: number;
  otherCores: number;
  /** New upstream connections per round (median), and per 10 s of load. */
  upstreamConns: number;
  upstreamConnsPer10s: number;
  clientConns: number;
  errors: number;
  errorNote?: string;
  logBytesPerReq: number;
}

export async function upstreamConnections(bench: Bench, key: UpstreamKey): Promise<number> {
  const r = await bench.upstream.call<{ counts: Record<string, { connections: number }> }>({
    type: "counts",
  });
  return r.counts[key]?.connections ?? 0;
}

/**
 * Waits (at most 3 s) until the last round's work is over: the proxy's CPU quiet and the
 * upstream's connection count still. A slow proxy keeps working through its backlog after the
 * generator stops; without this, that work would land in the next contender's round.
 */
export async function quiesce(contender: Contender, upstream: UpstreamProbe): Promise<number> {
  const deadline = Date.now() + 3000;
  let conns = await upstream.connections();
  for (;;) {
    const cpu0 = contender.pid ? processCpuSeconds(contender.pid) : 0;
    await new Promise((r) => setTimeout(r, 100));
    const cpu1 = contender.pid ? processCpuSeconds(contender.pid) : 0;
    const next = await upstream.connections();
    const still = next === conns || (Number.isNaN(next) && Number.isNaN(conns));
    conns = next;
    if ((cpu1 - cpu0 < 0.02 && still) || Date.now() > deadline) return conns;
  }
}

export async function measure(
  bench: Bench,
  contender: Contender,
  conns: number,
  round: number,
  upstream: UpstreamProbe,
  drive: () => Promise<Load>,
): Promise<Sample> {
  const upstreamPid = upstream.pid;
  const genPid = bench.gen.pid;
  const conn0 = await quiesce(contender, upstream);
  const log0 = logBytes(contender);
  const busy0 = machineBusySeconds();
  const proxy0 = contender.pid ? processCpuSeconds(contender.pid) : 0;
  const up0 = processCpuSeconds(upstreamPid);
  const gen0 = processCpuSeconds(genPid);
  const load = await drive();
  const gen1 = processCpuSeconds(genPid);
  const up1 = processCpuSeconds(upstreamPid);
  const proxy1 = contender.pid ? processCpuSeconds(contender.pid) : 0;
  const busy1 = machineBusySeconds();
  // Connections the proxy opens while it finishes its backlog are still its own.
  const conn1 = await quiesce(contender, upstream);
  const log1 = logBytes(contender);
  const elapsedS = load.elapsedMs / 1000;
  const proxyCpu = proxy1 - proxy0;
  const genCpu = gen1 - gen0 + (load.genCpuSeconds ?? 0);
  const upCpu = up1 - up0;
  // Our own runner's share is tiny (it waits); other processes are whatever is left.
  const other = Math.max(0, busy1 - busy0 - proxyCpu - genCpu - upCpu);
  const s: Sample = {
    contender: contender.name,
    conns,
    round,
    requests: load.requests,
    errors: load.errors,
    ...(load.errorNote ? { errorNote: load.errorNote } : {}),
    elapsedS,
    rps: load.requests / elapsedS,
    latencyUs: load.latencyUs,
    proxyUsPerReq: contender.pid ? (proxyCpu / Math.max(1, load.requests)) * 1e6 : Number.NaN,
    proxyCores: contender.pid ? proxyCpu / elapsedS : Number.NaN,
    genCores: genCpu / elapsedS,
    upstreamCores: upCpu / elapsedS,
    otherCores: other / elapsedS,
    upstreamConns: conn1 - conn0,
    logBytesPerReq: (log1 - log0) / Math.max(1, load.requests),
    withHeader: load.withHeader ?? 0,
    proxyCpuSeconds: proxyCpu,
  };
  bench.log(
    `  ${contender.name.padEnd(15)} c=${String(conns).padStart(3)} r${round}  ${s.rps.toFixed(0).padStart(6)} req/s  p50 ${(s.latencyUs.p50 / 1000).toFixed(2)} ms` +
      `  proxy ${Number.isFinite(s.proxyUsPerReq) ? s.proxyUsPerReq.toFixed(0) : "-"} µs/req  gen ${s.genCores.toFixed(2)} cores` +
      `  other ${s.otherCores.toFixed(2)}${Number.isNaN(s.upstreamConns) ? "" : `  up-conns ${s.upstreamConns}`}${s.errors ? `  errors ${s.errors} (${s.errorNote ?? ""})` : ""}`,
  );
  return s;
}

export function summarize(samples: Sample[]): Summary {
  const first = samples[0];
  if (!first) throw new Error("no samples");
  const pick = (f: (s: Sample) => number) => median(samples.map(f));
  const upstreamConns = pick((s) => s.upstreamConns);
  const errors = samples.reduce((a, s) => a + s.errors, 0);
  const note = samples.find((s) => s.errorNote)?.errorNote;
  return {
    contender: first.contender,
    conns: first.conns,
    rounds: samples.length,
    rps: pick((s) => s.rps),
    rpsRange: minMax(samples.map((s) => s.rps)),
    p50Us: pick((s) => s.latencyUs.p50),
    p90Us: pick((s) => s.latencyUs.p90),
    p99Us: pick((s) => s.latencyUs.p99),
    proxyUsPerReq: pick((s) => s.proxyUsPerReq),
    proxyCores: pick((s) => s.proxyCores),
    genCores: pick((s) => s.genCores),
    upstreamCores: pick((s) => s.upstreamCores),
    otherCores: pick((s) => s.otherCores),
    upstreamConns,
    upstreamConnsPer10s: pick((s) => (s.upstreamConns / s.elapsedS) * 10),
    clientConns: first.conns,
    errors,
    ...(note ? { errorNote: note } : {}),
    logBytesPerReq: pick((s) => s.logBytesPerReq),
  };
}

/** Load through the Node generator. */
export async function nodeLoad(bench: Bench, spec: RunSpec): Promise<Load> {
  const { result } = await bench.gen.call<{ result: RunResult }>(
    { type: "run", spec },
    (spec.durationMs ?? 600_000) + 120_000,
  );
  return {
    requests: result.requests,
    errors: result.errors,
    ...(result.firstError ? { errorNote: result.firstError } : {}),
    elapsedMs: result.elapsedMs,
    latencyUs: result.latencyUs,
    withHeader: result.withHeader,
  };
}

/** Load through wrk (plain HTTP only). */
export async function wrkLoad(
  bench: Bench,
  contender: Contender,
  target: string,
  conns: number,
  seconds: number,
): Promise<Load> {
  const r = await runWrk({
    dir: bench.env.root,
    connectTo: contender.url ?? new URL(target).origin,
    target,
    viaProxy: contender.url !== undefined,
    connections: conns,
    seconds,
  });
  const kinds = Object.entries(r.errorKinds).filter(([, n]) => n > 0);
  return {
    requests: r.requests,
    errors: r.errors,
    ...(kinds.length ? { errorNote: kinds.map(([k, n]) => `${k} ${n}`).join(", ") } : {}),
    elapsedMs: r.elapsedMs,
    latencyUs: r.latencyUs,
    genCpuSeconds: r.cpuSeconds,
  };
}
