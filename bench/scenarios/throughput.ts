import { startContender } from "../lib/contenders.js";
import type { Contender, ContenderName } from "../lib/contenders.js";
import { benchUpstream, measure, nodeLoad, summarize, wrkLoad } from "../lib/measure.js";
import type { Bench, Load, Sample, Summary, UpstreamKey } from "../lib/measure.js";
import type { RunSpec } from "../workers/loadgen.js";

/**
 * The keep-alive throughput scenarios, all contenders in the same run, alternating:
 *
 *   http-pass   HTTP_PROXY, a host that is not paid (stoka-proxy streams it, http-proxy-3)
 *   http-paid   HTTP_PROXY, stoka-proxy's paid host answering 200 (no 402); peers just forward
 *   https-paid  HTTPS_PROXY: CONNECT + TLS to the paid host, answering 200 (no 402);
 *               stoka-proxy, mitmproxy and the bare TLS forwarder terminate TLS (MITM)
 *   tunnel      HTTPS_PROXY-style CONNECT to a host that is not paid: blind tunnels, plain
 *               HTTP inside (so the tunnel's cost is not hidden under TLS crypto)
 */
export type ThroughputId = "http-pass" | "http-paid" | "https-paid" | "tunnel";

export interface ThroughputResult {
  id: ThroughputId;
  title: string;
  generator: string;
  levels: { conns: number; summaries: Summary[]; samples: Sample[] }[];
  notes: string[];
}

interface Def {
  id: ThroughputId;
  title: string;
  contenders: ContenderName[];
  generator: "wrk" | "node";
  upstream: UpstreamKey;
  target(bench: Bench): string;
}

export const THROUGHPUT: Def[] = [
  {
    id: "http-pass",
    title: "Plain HTTP pass-through (host not paid), HTTP_PROXY absolute-form",
    contenders: ["direct", "stoka-proxy", "bare-node", "http-proxy-3", "tinyproxy", "mitmproxy"],
    generator: "wrk",
    upstream: "plain",
    target: (b) => `http://127.0.0.1:${b.env.ports.plain}/bench`,
  },
  {
    id: "http-paid",
    title: "HTTP to a paid host without a 402, HTTP_PROXY absolute-form",
    contenders: ["direct", "stoka-proxy", "bare-node", "tinyproxy"],
    generator: "wrk",
    upstream: "paid_http",
    target: (b) => `http://127.0.0.2:${b.env.ports.paid_http}/v1/retrieve/bench`,
  },
  {
    id: "https-paid",
    title: "HTTPS to a paid host without a 402, HTTPS_PROXY (CONNECT + TLS; MITM)",
    contenders: ["direct", "stoka-proxy", "bare-node-mitm", "mitmproxy"],
    generator: "node",
    upstream: "paid_https",
    target: (b) => `https://127.0.0.3:${b.env.ports.paid_https}/v1/retrieve/bench`,
  },
  {
    id: "tunnel",
    title: "Blind CONNECT tunnels to a host that is not paid (plain HTTP inside)",
    contenders: ["direct", "stoka-proxy", "bare-node", "tinyproxy"],
    generator: "node",
    upstream: "plain",
    target: (b) => `http://127.0.0.1:${b.env.ports.plain}/bench`,
  },
];

function nodeSpec(bench: Bench, c: Contender, target: string, conns: number, ms: number): RunSpec {
  return {
    mode: c.url === undefined ? "direct" : "connect",
    target,
    ...(c.url ? { proxy: c.url } : {}),
    connections: conns,
    durationMs: ms,
    caFiles: bench.env.clientCaFiles(),
  };
}

export async function runThroughput(bench: Bench, def: Def): Promise<ThroughputResult> {
  const { options } = bench;
  const names = def.contenders.filter((n) => !options.contenders || options.contenders.includes(n));
  bench.log(`\n## ${def.id}: ${def.title}`);
  const contenders: Contender[] = [];
  try {
    for (const n of names) contenders.push(await startContender(bench.env, n, bench.secret));
    const target = def.target(bench);
    const drive = (c: Contender, conns: number, seconds: number): (() => Promise<Load>) =>
      def.generator === "wrk"
        ? () => wrkLoad(bench, c, target, conns, seconds)
        : () => nodeLoad(bench, nodeSpec(bench, c, target, conns, seconds * 1000));
    const levels: ThroughputResult["levels"] = [];
    for (const conns of options.conns) {
      for (const c of contenders) await drive(c, conns, options.warmupSeconds)();
      const samples: Sample[] = [];
      for (let r = 1; r <= options.rounds; r++) {
        for (const c of contenders) {
          samples.push(
            await measure(
              bench,
              c,
              conns,
              r,
              benchUpstream(bench, def.upstream),
              drive(c, conns, options.roundSeconds),
            ),
          );
        }
      }
      levels.push({
        conns,
        samples,
        summaries: contenders.map((c) => summarize(samples.filter((s) => s.contender === c.name))),
      });
    }
    return {
      id: def.id,
      title: def.title,
      generator:
        def.generator === "wrk"
          ? "wrk, 1 thread, absolute-form targets to the proxy"
          : "Node (undici Pool / ProxyAgent), one request in flight per connection",
      levels,
      notes: [],
    };
  } finally {
    for (const c of contenders) await c.stop();
  }
}
