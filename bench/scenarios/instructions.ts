import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { startBare, startStoka, stokaBenchConfig } from "../lib/contenders.js";
import type { Contender, ContenderName } from "../lib/contenders.js";
import { nodeLoad } from "../lib/measure.js";
import type { Bench } from "../lib/measure.js";
import type { RunSpec } from "../workers/loadgen.js";

/**
 * Instructions per request, counted by valgrind's callgrind: the same binary, inputs and
 * request count give the same count within ~1–2 %, whatever else the machine is doing, where
 * req/s and CPU µs/req on this shared 2-core machine move by ±15 % from one round to the next.
 *
 * Each contender runs alone under callgrind with instrumentation off through a long warm-up
 * (so V8 has finished optimizing the hot path: a short one measures the JIT compiler), then
 * instrumentation goes on, the counters are zeroed, one connection sends N requests, and the
 * counters are dumped. Counted: every thread of the process (the JIT compiler's and the GC's
 * included), user space only: the kernel's side (syscalls, TCP) is not in these numbers.
 */
const run = promisify(execFile);

export interface InstructionsRow {
  path: "https-paid" | "http-paid";
  contender: ContenderName;
  warmupRequests: number;
  requests: number;
  instructionsPerRequest: number;
}

export interface InstructionsResult {
  id: "instructions";
  title: string;
  rows: InstructionsRow[];
  notes: string[];
}

interface PathDef {
  path: InstructionsRow["path"];
  peer: ContenderName;
  peerMode: "mitm" | "forward";
  spec(bench: Bench, proxy: string): Omit<RunSpec, "count">;
}

const PATHS: PathDef[] = [
  {
    path: "https-paid",
    peer: "bare-node-mitm",
    peerMode: "mitm",
    spec: (b, proxy) => ({
      mode: "connect",
      proxy,
      target: `https://127.0.0.3:${b.env.ports.paid_https}/v1/retrieve/bench`,
      connections: 1,
      caFiles: b.env.clientCaFiles(),
      requestTimeoutMs: 120_000,
    }),
  },
  {
    path: "http-paid",
    peer: "bare-node",
    peerMode: "forward",
    spec: (b, proxy) => ({
      mode: "absolute",
      proxy,
      target: `http://127.0.0.2:${b.env.ports.paid_http}/v1/retrieve/bench`,
      connections: 1,
      requestTimeoutMs: 120_000,
    }),
  },
];

/** The total of the dump callgrind wrote for `--dump=measured`. */
export function measuredTotal(dir: string, base: string): number | undefined {
  for (const f of readdirSync(dir)) {
    if (!f.startsWith(base)) continue;
    const text = readFileSync(join(dir, f), "utf8");
    if (!text.includes("measured")) continue;
    const m = /^(?:summary|totals): (\d+)/m.exec(text);
    if (m?.[1]) return Number(m[1]);
  }
  return undefined;
}

async function count(
  bench: Bench,
  def: PathDef,
  name: ContenderName,
  warm: number,
  n: number,
): Promise<InstructionsRow> {
  const dir = bench.env.freshDir(`callgrind-${name}`);
  const base = "callgrind.out";
  const wrap = [
    "valgrind",
    "--tool=callgrind",
    `--callgrind-out-file=${join(dir, base)}`,
    "--instr-atstart=no",
    "--dump-instr=no",
  ];
  const c: Contender =
    name === "stoka-proxy"
      ? await startStoka(bench.env, stokaBenchConfig(bench.env), bench.secret, "stoka-callgrind", wrap)
      : await startBare(bench.env, name, def.peerMode, wrap);
  try {
    const pid = String(c.pid);
    // One connection for the whole run, warm-up included: a new one per load run would count
    // a CONNECT, a handshake and the JIT's work on a new socket's objects.
    const keep = `instructions-${def.path}-${name}`;
    const load = async (requests: number) => {
      const r = await nodeLoad(bench, { ...def.spec(bench, c.url as string), count: requests, keep });
      if (r.errors > 0 || r.requests < requests)
        throw new Error(`${name}: ${r.errors} errors in ${requests} requests (${r.errorNote ?? "no note"})`);
    };
    await load(warm);
    await run("callgrind_control", ["--instr=on", pid]);
    await load(50);
    await run("callgrind_control", ["-z", pid]);
    await load(n);
    await run("callgrind_control", ["--dump=measured", pid]);
    let total: number | undefined;
    for (let i = 0; i < 100 && total === undefined; i++) {
      total = existsSync(dir) ? measuredTotal(dir, base) : undefined;
      if (total === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    if (total === undefined) throw new Error(`${name}: callgrind wrote no dump in ${dir}`);
    await bench.gen.call({ type: "close", name: keep });
    return {
      path: def.path,
      contender: name,
      warmupRequests: warm,
      requests: n,
      instructionsPerRequest: Math.round(total / n),
    };
  } finally {
    await c.stop();
  }
}

export async function runInstructions(bench: Bench): Promise<InstructionsResult> {
  await run("valgrind", ["--version"]).catch(() => {
    throw new Error("valgrind is not installed (apt-get install valgrind)");
  });
  const quick = bench.options.quick;
  const warm = quick ? 500 : 6000;
  const n = quick ? 200 : 1000;
  bench.log("\n## instructions: instructions per request under callgrind, steady state, one connection");
  const rows: InstructionsRow[] = [];
  for (const def of PATHS) {
    for (const name of ["stoka-proxy", def.peer] as ContenderName[]) {
      if (bench.options.contenders && !bench.options.contenders.includes(name)) continue;
      const row = await count(bench, def, name, warm, n);
      rows.push(row);
      bench.log(
        `  ${def.path.padEnd(10)} ${name.padEnd(15)} ${row.instructionsPerRequest} instructions/request`,
      );
    }
  }
  return {
    id: "instructions",
    title: "Instructions per request (callgrind), steady state, one connection",
    rows,
    notes: [
      `each contender alone under valgrind --tool=callgrind; ${warm} requests with instrumentation off first, then ${n} counted`,
      "all threads of the process (JIT compiler and GC included), user space only: syscalls and the kernel's TCP work are not counted",
      "repeatable to ~1–2 % on one machine; it counts work, not time: cache misses and the kernel are in req/s and CPU µs/req, not here",
    ],
  };
}
