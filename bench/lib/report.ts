import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { peerVersions } from "./contenders.js";
import type { Summary } from "./measure.js";
import type { BenchResults, Machine } from "./results.js";
import { evaluateTargets } from "./targets.js";
import { ratio } from "./stats.js";

/** The run's JSON and its Markdown table under bench/results/, and latest.md. */
const ROOT = new URL("../..", import.meta.url).pathname;

export function describeMachine(stokaLogging: string): Machine {
  const git = (args: string[]) => {
    try {
      return execFileSync("git", args, { cwd: ROOT, encoding: "utf8" }).trim();
    } catch {
      return "?";
    }
  };
  const dirty = git(["status", "--porcelain", "--", "src"]) !== "";
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
  return {
    cpuModel: os.cpus()[0]?.model ?? "?",
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadAverageAtStart: os.loadavg().map((v) => Math.round(v * 100) / 100),
    stokaProxy: {
      version: pkg.version,
      commit: `${git(["rev-parse", "--short", "HEAD"])}${dirty ? " (src/ modified)" : ""}`,
    },
    peers: peerVersions(),
    stokaLogging,
  };
}

const f = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : "—");
const ms = (us: number) => f(us / 1000, 2);

function throughputTable(summaries: Summary[]): string[] {
  const stoka = summaries.find((s) => s.contender === "stoka-proxy");
  const lines = [
    "| contender | req/s (median) | min–max | stoka-proxy ÷ this | p50 / p90 / p99 ms | proxy CPU µs/req | proxy cores | new upstream conns per round (per 10 s) | generator cores | other load cores | errors | log B/req |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  for (const s of summaries) {
    const r = stoka && s !== stoka ? `${f(ratio(stoka.rps, s.rps), 2)}×` : "";
    lines.push(
      `| ${s.contender} | ${f(s.rps)} | ${f(s.rpsRange[0])}–${f(s.rpsRange[1])} | ${r} | ${ms(s.p50Us)} / ${ms(s.p90Us)} / ${ms(s.p99Us)} | ${f(s.proxyUsPerReq)} | ${f(s.proxyCores, 2)} | ${f(s.upstreamConns)} (${f(s.upstreamConnsPer10s)}) | ${f(s.genCores, 2)}${s.genCores >= 0.9 ? " ⚠" : ""} | ${f(s.otherCores, 2)} | ${s.errors}${s.errorNote ? ` (${s.errorNote})` : ""} | ${f(s.logBytesPerReq)} |`,
    );
  }
  return lines;
}

export function renderMarkdown(r: BenchResults): string {
  const m = r.machine;
  const o = r.options;
  const out: string[] = [];
  out.push(`# stoka-proxy benchmark, ${r.startedAt}${o.quick ? " (quick)" : ""}`, "");
  out.push(
    "Load generator, proxy and upstream share this machine's CPU: compare ratios within one run, not absolute numbers across machines.",
    "",
  );
  out.push("## Machine", "");
  out.push(`- CPU: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB; ${m.kernel}; Node ${m.node}`);
  out.push(`- load average at start: ${m.loadAverageAtStart.join(", ")}`);
  out.push(`- stoka-proxy ${m.stokaProxy.version} at ${m.stokaProxy.commit}; ${m.stokaLogging}`);
  out.push(
    `- peers: ${Object.entries(m.peers)
      .map(([k, v]) => `${k}: ${v}`)
      .join("; ")}`,
  );
  out.push(
    `- rounds: ${o.rounds} × ${o.roundSeconds} s per contender and level, after a ${o.warmupSeconds} s warm-up each; contenders alternate (A B C A B C …); numbers are medians over rounds`,
  );
  out.push(`- started ${r.startedAt}, finished ${r.finishedAt}`, "");

  out.push("## Targets", "", "| target | this run | status |", "|---|---|---|");
  for (const t of evaluateTargets(r))
    out.push(
      `| ${t.target} | ${t.result} | ${t.status === "PASS" ? "✅ PASS" : t.status === "FAIL" ? "❌ FAIL" : "n/a"} |`,
    );
  out.push("");

  for (const t of r.throughput) {
    out.push(`## ${t.id}: ${t.title}`, "", `Generator: ${t.generator}.`, "");
    for (const l of t.levels) {
      out.push(
        `### ${l.conns} connection${l.conns === 1 ? "" : "s"}`,
        "",
        ...throughputTable(l.summaries),
        "",
      );
    }
    for (const n of t.notes) out.push(`- ${n}`);
  }

  if (r.latency) {
    out.push(`## latency: ${r.latency.title}`, "", ...throughputTable(r.latency.summaries), "");
    for (const [k, v] of Object.entries(r.latency.addedP50Ms))
      out.push(`- ${k}: +${f(v, 3)} ms p50 over direct`);
    out.push("");
  }
  if (r.freshHttps) {
    const fh = r.freshHttps;
    out.push(
      `## fresh-https: ${fh.title}`,
      "",
      `${fh.runs} runs per contender, alternating; curl's time_total.`,
      "",
    );
    out.push("| contender | median ms | p90 ms | added over direct ms | failures |", "|---|--:|--:|--:|--:|");
    for (const [k, v] of Object.entries(fh.medianMs))
      out.push(
        `| ${k} | ${f(v, 2)} | ${f(fh.p90Ms[k] ?? NaN, 2)} | ${k === "direct" ? "" : `+${f(fh.addedMs[k] ?? NaN, 2)}`} | ${fh.failures[k] ?? 0} |`,
      );
    out.push("");
  }
  if (r.paid) {
    const p = r.paid;
    out.push(`## paid: ${p.title}`, "");
    out.push(
      `Price per 1 KiB store: ${p.price} atomic USDC. A payment counts only if the answer carried X-Stoka-Proxy-Paid; the emulator's own charges are compared with that count.`,
      "",
    );
    out.push(
      "| phase | paid stores | emulator charges | paid/s | p50 / p90 / p99 ms | proxy CPU ms/payment | RPC calls per payment | errors |",
      "|---|--:|--:|--:|--:|--:|---|--:|",
    );
    out.push(
      `| cold (first store of a fresh proxy, median of ${p.cold.runs}) | ${p.cold.runs} | | | ${f(p.cold.medianMs, 2)} (${p.cold.latenciesMs.map((v) => f(v, 1)).join(", ")}) | | | |`,
    );
    for (const [name, ph] of [
      ["warm, 1 in flight", p.warm],
      ["32 in flight", p.inflight32],
      ["warm, quote-ahead (`quote_ahead: [store]`)", p.warmQuoteAhead],
      ["32 in flight, quote-ahead", p.inflight32QuoteAhead],
    ] as const) {
      if (!ph) continue;
      const rpc = Object.entries(ph.rpcCallsPerPayment)
        .map(([k, v]) => `${k} ${f(v, 2)}`)
        .join(", ");
      out.push(
        `| ${name} | ${ph.paid} | ${ph.charges} | ${f(ph.paidPerSecond, 1)} | ${ms(ph.summary.p50Us)} / ${ms(ph.summary.p90Us)} / ${ms(ph.summary.p99Us)} | ${f(ph.proxyCpuMsPerPayment, 2)} | ${rpc} | ${ph.summary.errors}${ph.summary.errorNote ? ` (${ph.summary.errorNote})` : ""} |`,
      );
    }
    out.push("");
    for (const n of p.notes) out.push(`- ${n}`);
    out.push("");
  }
  if (r.official) {
    const o = r.official;
    out.push(`## official: ${o.title}`, "");
    out.push(
      `Price ${o.price} atomic USDC. Paid answers: ${o.paid.client} by the official client, ${o.paid.proxy} through the proxy; the server settled ${o.paid.settlements}.`,
      "",
    );
    out.push(
      "| | official client (in-process) ms | via stoka-proxy ms | proxy ÷ client |",
      "|---|--:|--:|--:|",
    );
    out.push(
      `| cold, median of ${o.cold.runs} (first request of a fresh process) | ${f(o.cold.clientMedianMs, 2)} (${o.cold.clientMs.map((v) => f(v, 1)).join(", ")}) | ${f(o.cold.proxyMedianMs, 2)} (${o.cold.proxyMs.map((v) => f(v, 1)).join(", ")}) | ${f(o.cold.ratio, 2)}× |`,
    );
    out.push(
      `| warm p50, ${o.warm.requests} requests each, 1 in flight | ${f(o.warm.clientP50Ms, 2)} | ${f(o.warm.proxyP50Ms, 2)} | ${f(o.warm.ratio, 2)}× |`,
    );
    out.push(`| warm p90 | ${f(o.warm.clientP90Ms, 2)} | ${f(o.warm.proxyP90Ms, 2)} | |`);
    out.push(`| quote-ahead | | ${o.quoteAhead} | |`, "");
    for (const n of o.notes) out.push(`- ${n}`);
    out.push("");
  }
  if (r.memory) {
    const mm = r.memory;
    out.push(`## memory: ${mm.title}`, "", "| state | RSS MB |", "|---|--:|");
    out.push(`| idle after start | ${f(mm.rssMB.idle, 1)} |`);
    out.push(
      `| ${mm.idleConnections} idle HTTP keep-alive connections (paid host) | ${f(mm.rssMB.idleHttp, 1)} |`,
    );
    out.push(`| ${mm.idleConnections} idle MITM TLS tunnels (paid host) | ${f(mm.rssMB.idleMitm, 1)} |`);
    out.push(`| after ${mm.requests[0]} requests | ${f(mm.rssMB.afterFirst, 1)} |`);
    out.push(`| after ${mm.requests[1]} requests | ${f(mm.rssMB.afterSecond, 1)} |`, "");
    for (const n of mm.notes) out.push(`- ${n}`);
    out.push("");
  }
  if (r.instructions) {
    const ins = r.instructions;
    out.push(
      `## instructions: ${ins.title}`,
      "",
      "| path | contender | instructions/request | stoka-proxy ÷ this |",
      "|---|---|--:|--:|",
    );
    for (const row of ins.rows) {
      const ours = ins.rows.find((x) => x.path === row.path && x.contender === "stoka-proxy");
      const ratio =
        ours && row.contender !== "stoka-proxy"
          ? `${(ours.instructionsPerRequest / row.instructionsPerRequest).toFixed(2)}×`
          : "";
      out.push(
        `| ${row.path} | ${row.contender} | ${row.instructionsPerRequest.toLocaleString("en-US")} | ${ratio} |`,
      );
    }
    out.push("");
    for (const n of ins.notes) out.push(`- ${n}`);
    out.push("");
  }
  if (r.failures.length > 0) {
    out.push("## Scenarios that failed", "");
    for (const x of r.failures) out.push(`- **${x.scenario}**: ${x.message.split("\n")[0]}`);
    out.push("");
  }
  out.push(
    "## Reading the columns",
    "",
    "- *proxy CPU µs/req*: utime + stime of the proxy process (all threads, /proc/PID/stat) over the round, divided by the requests answered.",
    "- *new upstream conns per round*: TCP connections the upstream accepted during the round (each round opens its own client connections, as many as the level says).",
    "- *generator cores* / *other load cores*: CPU the load generator used, and CPU used by everything else on the machine (busy time from /proc/stat minus proxy, generator and upstream). Other load above ~0.2 cores means the numbers are disturbed.",
    "- ⚠ after *generator cores*: the load generator used ≥ 0.9 of a core, so it may be what limits that row (it is one thread or one event loop).",
    "- wrk opens one connection more than it is asked for, so its *direct* rows show N + 1 upstream connections.",
    "- wrk counts a connection the proxy closes after a response as a *read* error (tinyproxy closes every client connection after one response).",
    "",
  );
  return out.join("\n");
}

export function writeResults(r: BenchResults): { json: string; md: string } {
  mkdirSync(r.options.outDir, { recursive: true });
  const stamp = r.startedAt.replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const base = join(r.options.outDir, `${stamp}${r.options.quick ? "-quick" : ""}`);
  const md = renderMarkdown(r);
  writeFileSync(`${base}.json`, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(`${base}.md`, md);
  writeFileSync(join(r.options.outDir, "latest.md"), md);
  return { json: `${base}.json`, md: `${base}.md` };
}
