import { parseArgs } from "node:util";
import type { BenchOptions } from "./measure.js";

/**
 * Flags (and the env vars that stand for them) of `npm run bench`:
 *
 *   --quick                 BENCH_QUICK=1       short smoke run: 16 connections only, 2 rounds of 1 s
 *   --scenarios a,b         BENCH_SCENARIOS     subset (see SCENARIOS)
 *   --contenders a,b        BENCH_CONTENDERS    subset of the contenders (direct, stoka-proxy, …)
 *   --conns 1,16,64         BENCH_CONNS         connection levels of the throughput scenarios
 *   --round-seconds N       BENCH_ROUND_SECONDS length of one measured round
 *   --rounds N              BENCH_ROUNDS        rounds per contender
 *   --warmup-seconds N      BENCH_WARMUP_SECONDS
 *   --out DIR               BENCH_OUT           where results go (default bench/results)
 *   --keep-temp                                 keep the temp folder (configs, logs)
 */
export const SCENARIOS = [
  "http-pass",
  "http-paid",
  "https-paid",
  "tunnel",
  "latency",
  "fresh-https",
  "paid",
  "official",
  "memory",
  "instructions",
] as const;

const ROOT = new URL("../..", import.meta.url).pathname;

function list(text: string | undefined): string[] | undefined {
  const v = text
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return v && v.length > 0 ? v : undefined;
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean" },
      scenarios: { type: "string" },
      contenders: { type: "string" },
      conns: { type: "string" },
      "round-seconds": { type: "string" },
      rounds: { type: "string" },
      "warmup-seconds": { type: "string" },
      out: { type: "string" },
      "keep-temp": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(
      `usage: npm run bench -- [--quick] [--scenarios ${SCENARIOS.join(",")}] [--contenders …] [--conns 1,16,64]\n` +
        "                      [--round-seconds N] [--rounds N] [--warmup-seconds N] [--out DIR] [--keep-temp]\n",
    );
    process.exit(0);
  }
  const quick = values.quick === true || env.BENCH_QUICK === "1";
  const num = (flag: string | undefined, name: string, dflt: number) => {
    const text = flag ?? env[name];
    if (text === undefined) return dflt;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: expected a positive number, got ${text}`);
    return n;
  };
  const scenarios = list(values.scenarios ?? env.BENCH_SCENARIOS) ?? [...SCENARIOS];
  for (const s of scenarios)
    if (!(SCENARIOS as readonly string[]).includes(s))
      throw new Error(`unknown scenario ${s}; choose from ${SCENARIOS.join(", ")}`);
  const conns = (list(values.conns ?? env.BENCH_CONNS) ?? (quick ? ["16"] : ["1", "16", "64"])).map(Number);
  return {
    quick,
    scenarios,
    contenders: list(values.contenders ?? env.BENCH_CONTENDERS),
    conns,
    roundSeconds: num(values["round-seconds"], "BENCH_ROUND_SECONDS", quick ? 1 : 3),
    rounds: Math.round(num(values.rounds, "BENCH_ROUNDS", quick ? 2 : 3)),
    warmupSeconds: num(values["warmup-seconds"], "BENCH_WARMUP_SECONDS", quick ? 0.5 : 2),
    outDir: values.out ?? env.BENCH_OUT ?? `${ROOT}bench/results`,
    keepTemp: values["keep-temp"] === true,
  };
}
