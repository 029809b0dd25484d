import { startStoka, stokaBenchConfig } from "../lib/contenders.js";
import type { Contender } from "../lib/contenders.js";
import { nodeLoad } from "../lib/measure.js";
import type { Bench } from "../lib/measure.js";
import { processRssBytes } from "../lib/proc.js";
import type { RunSpec } from "../workers/loadgen.js";

/**
 * stoka-proxy's resident memory (RSS, /proc/PID/status), on two fresh proxies so one reading
 * does not carry the other's high-water mark:
 *
 *   1. idle after start, then after 50 000 and 100 000 requests to the paid host over HTTP
 *      (no 402, 64 connections): does it grow between the two?
 *   2. idle after start, then holding 1 000 idle keep-alive client connections (from four
 *      source addresses), each after one request: plain HTTP to the paid host, then (after
 *      those close) MITM TLS tunnels to it. Read 1 s after the last answer, well inside the
 *      proxy's client idle timeout.
 */
export interface MemoryResult {
  id: "memory";
  title: string;
  idleConnections: number;
  requests: [number, number];
  rssMB: { idle: number; idleHttp: number; idleMitm: number; afterFirst: number; afterSecond: number };
  growthMB: number;
  errors: number;
  notes: string[];
}

/** MB = 10^6 bytes, the unit of the target. */
const MB = 1_000_000;
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withProxy<T>(
  bench: Bench,
  tag: string,
  f: (p: Contender, rss: () => number) => Promise<T>,
): Promise<T> {
  const proxy = await startStoka(bench.env, stokaBenchConfig(bench.env), bench.secret, tag);
  try {
    const pid = proxy.pid as number;
    await settle(bench.options.quick ? 1000 : 2000);
    return await f(proxy, () => processRssBytes(pid) / MB);
  } finally {
    await proxy.stop();
  }
}

export async function runMemory(bench: Bench): Promise<MemoryResult> {
  const { env, options } = bench;
  bench.log("\n## memory: stoka-proxy RSS idle, over 100 000 requests, and at 1 000 idle connections");
  const notes: string[] = [];
  let errors = 0;
  // The quick smoke run holds fewer (the RSS target, at 1 000, is then not judged).
  const idleConnections = options.quick ? 100 : 1000;
  const perHalf = options.quick ? 2_000 : 50_000;
  const paidHttp = `http://127.0.0.2:${env.ports.paid_http}/v1/retrieve/bench`;
  const paidHttps = `https://127.0.0.3:${env.ports.paid_https}/v1/retrieve/bench`;
  const counted = (what: string, r: { errors: number; errorNote?: string }) => {
    errors += r.errors;
    if (r.errors > 0) notes.push(`${what}: ${r.errors} errors (${r.errorNote ?? ""})`);
  };

  const growth = await withProxy(bench, "stoka-memory-requests", async (proxy, rss) => {
    const idle = rss();
    const half = async (): Promise<number> => {
      const spec: RunSpec = {
        mode: "absolute",
        proxy: proxy.url as string,
        target: paidHttp,
        connections: 64,
        count: perHalf,
      };
      counted("requests", await nodeLoad(bench, spec));
      await settle(1000);
      return rss();
    };
    const afterFirst = await half();
    const afterSecond = await half();
    bench.log(
      `  idle ${idle.toFixed(1)} MB, after ${perHalf} requests ${afterFirst.toFixed(1)} MB, after ${2 * perHalf} ${afterSecond.toFixed(1)} MB`,
    );
    return { afterFirst, afterSecond };
  });

  const idle = await withProxy(bench, "stoka-memory-idle", async (proxy, rss) => {
    const idle = rss();
    // From four source addresses, as from four hosts: the proxy caps connections per client
    // address (connections.max_per_client, 256 by default), and this measures its defaults.
    const sources = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"];
    const hold = async (name: string, spec: RunSpec): Promise<number> => {
      const per = Math.ceil(spec.connections / sources.length);
      const runs = await Promise.all(
        sources.map((localAddress, i) =>
          nodeLoad(bench, { ...spec, connections: per, count: per, localAddress, keep: `${name}-${i}` }),
        ),
      );
      for (const r of runs) counted(name, r);
      await settle(1000);
      const v = rss();
      for (let i = 0; i < sources.length; i++) await bench.gen.call({ type: "close", name: `${name}-${i}` });
      await settle(500);
      return v;
    };
    const url = proxy.url as string;
    const n = idleConnections;
    const idleHttp = await hold("idle-http", {
      mode: "absolute",
      proxy: url,
      target: paidHttp,
      connections: n,
      count: n,
    });
    const idleMitm = await hold("idle-mitm", {
      mode: "connect",
      proxy: url,
      target: paidHttps,
      connections: n,
      count: n,
      caFiles: env.clientCaFiles(),
      requestTimeoutMs: 60_000,
    });
    bench.log(
      `  idle ${idle.toFixed(1)} MB, ${n} idle HTTP ${idleHttp.toFixed(1)} MB, ${n} idle MITM ${idleMitm.toFixed(1)} MB`,
    );
    return { idle, idleHttp, idleMitm };
  });

  return {
    id: "memory",
    title: "stoka-proxy resident memory (RSS)",
    idleConnections,
    requests: [perHalf, 2 * perHalf],
    rssMB: { ...idle, ...growth },
    growthMB: growth.afterSecond - growth.afterFirst,
    errors,
    notes,
  };
}
