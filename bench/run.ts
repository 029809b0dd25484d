/**
 * `npm run bench`: stoka-proxy side by side with its peers on this machine (bench/README.md).
 * Not a test: it gates nothing; it measures and writes bench/results/. Traffic stays on
 * loopback (127.0.0.1–127.0.0.3), every load is bounded in time or count, and every process it
 * starts is stopped at the end.
 */
import { Keypair } from "@stellar/stellar-sdk";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { makeBenchEnv } from "./lib/env.js";
import type { Bench } from "./lib/measure.js";
import { SCENARIOS, parseOptions } from "./lib/options.js";
import { describeMachine, writeResults } from "./lib/report.js";
import type { BenchResults } from "./lib/results.js";
import { evaluateTargets } from "./lib/targets.js";
import { startWorker } from "./lib/worker.js";
import { runFreshHttps, runLatency } from "./scenarios/latency.js";
import { runInstructions } from "./scenarios/instructions.js";
import { runMemory } from "./scenarios/memory.js";
import { runOfficial } from "./scenarios/official.js";
import { runPaid } from "./scenarios/paid.js";
import { THROUGHPUT, runThroughput } from "./scenarios/throughput.js";

const ROOT = new URL("..", import.meta.url).pathname;
const options = parseOptions(process.argv.slice(2), process.env);
const log = (line: string) => process.stdout.write(`${line}\n`);

// The tools each scenario drives (bench/setup.sh installs them; this fails fast if it did not run).
const needs: Record<string, [string, string][]> = {
  "http-pass": [
    ["wrk", "wrk"],
    ["tinyproxy", "tinyproxy"],
    ["mitmdump", "mitmproxy"],
  ],
  "http-paid": [
    ["wrk", "wrk"],
    ["tinyproxy", "tinyproxy"],
  ],
  "https-paid": [["mitmdump", "mitmproxy"]],
  tunnel: [["tinyproxy", "tinyproxy"]],
  "fresh-https": [
    ["curl", "curl"],
    ["mitmdump", "mitmproxy"],
  ],
};
const missing = new Set<string>();
for (const s of options.scenarios)
  for (const [cmd, pkg] of needs[s] ?? []) {
    try {
      execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    } catch {
      missing.add(pkg);
    }
  }
if (missing.size > 0) {
  process.stderr.write(
    `bench: missing ${[...missing].join(", ")}; install with: apt-get update && apt-get install -y --no-install-recommends ${[...missing].join(" ")}\n`,
  );
  process.exit(1);
}

const startedAt = new Date().toISOString();
const machine = describeMachine(
  "logging: stoka-proxy runs as `node dist/cli/main.js start` at its default log level (info: one JSON line per request), stdout and stderr appended to a file; " +
    "tinyproxy at its default LogLevel Info to /dev/null (it fsyncs every line); mitmdump at its default verbosity to a file; the bare Node peers log nothing",
);
const env = await makeBenchEnv(options.keepTemp);
const upstream = await startWorker<{ ports: Bench["env"]["ports"] }>(
  join(ROOT, "bench/workers/upstream.ts"),
  [JSON.stringify({ certFile: env.upstreamCertFile, keyFile: env.upstreamKeyFile, bodyBytes: 128 })],
);
env.ports = upstream.ready.ports;
const gen = await startWorker<Record<string, never>>(join(ROOT, "bench/workers/loadgen.ts"), []);
// A fresh wallet seed for the throughput scenarios (nothing there answers 402); never printed.
const bench: Bench = { env, options, upstream, gen, secret: Keypair.random().secret(), log };
log(
  `stoka-proxy bench: ${options.scenarios.join(", ")}; ${options.rounds} × ${options.roundSeconds} s rounds, conns ${options.conns.join("/")}` +
    `; load average ${machine.loadAverageAtStart.join(" ")}`,
);

const results: BenchResults = {
  startedAt,
  finishedAt: "",
  machine,
  options,
  throughput: [],
  failures: [],
};
const attempt = async (scenario: string, f: () => Promise<void>) => {
  const t0 = Date.now();
  try {
    await f();
    log(`  (${scenario}: ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    const message = (e as Error).stack ?? String(e);
    log(`  ${scenario} failed: ${message}`);
    results.failures.push({ scenario, message });
  }
};
try {
  for (const id of SCENARIOS) {
    if (!options.scenarios.includes(id)) continue;
    const def = THROUGHPUT.find((t) => t.id === id);
    if (def) await attempt(id, async () => void results.throughput.push(await runThroughput(bench, def)));
    else if (id === "latency")
      await attempt(id, async () => void (results.latency = await runLatency(bench)));
    else if (id === "fresh-https")
      await attempt(id, async () => void (results.freshHttps = await runFreshHttps(bench)));
    else if (id === "paid") await attempt(id, async () => void (results.paid = await runPaid(bench)));
    else if (id === "official")
      await attempt(id, async () => void (results.official = await runOfficial(bench)));
    else if (id === "memory") await attempt(id, async () => void (results.memory = await runMemory(bench)));
    else if (id === "instructions")
      await attempt(id, async () => void (results.instructions = await runInstructions(bench)));
  }
} finally {
  await gen.stop();
  await upstream.stop();
  env.remove();
}
results.finishedAt = new Date().toISOString();
const files = writeResults(results);
log("\n## targets");
for (const t of evaluateTargets(results)) log(`  ${t.status.padEnd(4)}  ${t.target}: ${t.result}`);
log(`\nwrote ${files.md}\n      ${files.json}\n      ${join(options.outDir, "latest.md")}`);
process.exit(results.failures.length > 0 ? 1 : 0);
