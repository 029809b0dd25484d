import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { startContender } from "../lib/contenders.js";
import type { Contender, ContenderName } from "../lib/contenders.js";
import { benchUpstream, measure, nodeLoad, summarize } from "../lib/measure.js";
import type { Bench, Sample, Summary } from "../lib/measure.js";
import { median, percentileSorted } from "../lib/stats.js";

/**
 * The latency adders:
 *   latency      one HTTP request in flight to the paid host (no 402), p50 over direct
 *   fresh-https  one fresh HTTPS request to the paid host by curl (new process, new TCP and TLS
 *                connection each time), through each proxy vs direct
 */
const run = promisify(execFile);

export interface LatencyResult {
  id: "latency";
  title: string;
  summaries: Summary[];
  samples: Sample[];
  /** p50 of each contender minus direct's, in ms. */
  addedP50Ms: Record<string, number>;
}

export async function runLatency(bench: Bench): Promise<LatencyResult> {
  const { options } = bench;
  const names = (["direct", "stoka-proxy", "bare-node"] as ContenderName[]).filter(
    (n) => !options.contenders || options.contenders.includes(n),
  );
  bench.log("\n## latency: one HTTP request in flight to the paid host (no 402)");
  const contenders: Contender[] = [];
  try {
    for (const n of names) contenders.push(await startContender(bench.env, n, bench.secret));
    const target = `http://127.0.0.2:${bench.env.ports.paid_http}/v1/retrieve/bench`;
    const spec = (c: Contender, ms: number) => ({
      mode: c.url ? ("absolute" as const) : ("direct" as const),
      target,
      ...(c.url ? { proxy: c.url } : {}),
      connections: 1,
      durationMs: ms,
    });
    for (const c of contenders) await nodeLoad(bench, spec(c, options.warmupSeconds * 1000));
    const samples: Sample[] = [];
    for (let r = 1; r <= options.rounds; r++)
      for (const c of contenders)
        samples.push(
          await measure(bench, c, 1, r, benchUpstream(bench, "paid_http"), () =>
            nodeLoad(bench, spec(c, options.roundSeconds * 1000)),
          ),
        );
    const summaries = contenders.map((c) => summarize(samples.filter((s) => s.contender === c.name)));
    const direct = summaries.find((s) => s.contender === "direct");
    const addedP50Ms: Record<string, number> = {};
    for (const s of summaries)
      if (direct && s.contender !== "direct") addedP50Ms[s.contender] = (s.p50Us - direct.p50Us) / 1000;
    return {
      id: "latency",
      title: "One HTTP request in flight to the paid host (no 402), Node generator, absolute-form",
      summaries,
      samples,
      addedP50Ms,
    };
  } finally {
    for (const c of contenders) await c.stop();
  }
}

export interface FreshHttpsResult {
  id: "fresh-https";
  title: string;
  runs: number;
  /** curl's time_total, ms: median and p90 per contender. */
  medianMs: Record<string, number>;
  p90Ms: Record<string, number>;
  addedMs: Record<string, number>;
  failures: Record<string, number>;
}

export async function runFreshHttps(bench: Bench): Promise<FreshHttpsResult> {
  const { options } = bench;
  const names = (["direct", "stoka-proxy", "bare-node-mitm", "mitmproxy"] as ContenderName[]).filter(
    (n) => !options.contenders || options.contenders.includes(n),
  );
  bench.log("\n## fresh-https: one new HTTPS request by curl, through each proxy vs direct");
  const contenders: Contender[] = [];
  try {
    for (const n of names) contenders.push(await startContender(bench.env, n, bench.secret));
    const bundle = bench.env.caBundle();
    const target = `https://127.0.0.3:${bench.env.ports.paid_https}/v1/retrieve/bench`;
    const runs = options.quick ? 8 : 40;
    const times: Record<string, number[]> = {};
    const failures: Record<string, number> = {};
    const once = async (c: Contender): Promise<number> => {
      const args = ["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--cacert", bundle];
      if (c.url) args.push("--proxy", c.url);
      const { stdout } = await run("curl", [...args, target], { timeout: 15_000 });
      const [code, total] = stdout.trim().split(" ");
      if (code !== "200") throw new Error(`curl got ${code}`);
      return Number(total) * 1000;
    };
    // Warm-up: the proxies' first leaf certificate and JIT are not what this measures.
    for (const c of contenders) for (let i = 0; i < 3; i++) await once(c).catch(() => 0);
    for (let i = 0; i < runs; i++) {
      for (const c of contenders) {
        try {
          (times[c.name] ??= []).push(await once(c));
        } catch {
          failures[c.name] = (failures[c.name] ?? 0) + 1;
        }
      }
    }
    const medianMs: Record<string, number> = {};
    const p90Ms: Record<string, number> = {};
    for (const [k, v] of Object.entries(times)) {
      medianMs[k] = median(v);
      p90Ms[k] = percentileSorted(
        [...v].sort((a, b) => a - b),
        90,
      );
    }
    const addedMs: Record<string, number> = {};
    for (const [k, v] of Object.entries(medianMs))
      if (k !== "direct" && medianMs.direct !== undefined) addedMs[k] = v - medianMs.direct;
    for (const [k, v] of Object.entries(medianMs))
      bench.log(`  ${k.padEnd(15)} median ${v.toFixed(2)} ms  p90 ${(p90Ms[k] ?? NaN).toFixed(2)} ms`);
    return {
      id: "fresh-https",
      title: "One fresh HTTPS request to the paid host (curl, new connection each time)",
      runs,
      medianMs,
      p90Ms,
      addedMs,
      failures,
    };
  } finally {
    for (const c of contenders) await c.stop();
  }
}
