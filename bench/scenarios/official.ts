import { join } from "node:path";
import { startStoka } from "../lib/contenders.js";
import type { Bench } from "../lib/measure.js";
import { median, ratio } from "../lib/stats.js";
import { startWorker } from "../lib/worker.js";
import type { Worker } from "../lib/worker.js";
import type { RunResult, RunSpec } from "../workers/loadgen.js";

/**
 * The same paid request to the official x402 v2 server (test/support/official-x402-server.ts),
 * paid two ways, alternating:
 *
 *   client  in-process by the official client (@x402/fetch + @x402/stellar), no proxy
 *   proxy   a plain HTTP client through stoka-proxy, which pays (absolute-form, HTTP_PROXY)
 *
 *   cold    the first paid request of a fresh client process / a freshly started proxy
 *   warm    one request in flight, after a warm-up, keep-alive on both sides
 *
 * Both sign with the same funded payer against the server's own fake RPC; the server's own
 * settlements are counted and must match the paid answers. Quote-ahead prices from a stoka
 * manifest's `pricing`, which this server does not publish, so that target stays n/a here; the
 * `paid` scenario measures quote-ahead against the stoka emulator.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const HOST = "x402.test";

interface OfficialReady {
  url: string;
  path: string;
  rpc: string;
  caFile: string;
  payTo: string;
  price: string;
  secret: string;
}
interface OfficialStats {
  settlements: number;
  rpcCalls: Record<string, number>;
  facilitatorCalls: Record<string, number>;
}
interface ClientRun {
  latenciesMs: number[];
  p50Ms: number;
  p90Ms: number;
  paid: number;
  errors: number;
  firstError?: string;
}

export interface OfficialResult {
  id: "official";
  title: string;
  price: string;
  cold: {
    runs: number;
    clientMs: number[];
    proxyMs: number[];
    clientMedianMs: number;
    proxyMedianMs: number;
    ratio: number;
  };
  warm: {
    requests: number;
    clientP50Ms: number;
    clientP90Ms: number;
    proxyP50Ms: number;
    proxyP90Ms: number;
    ratio: number;
  };
  quoteAhead: string;
  paid: { client: number; proxy: number; settlements: number };
  notes: string[];
}

async function startClient(official: Worker<OfficialReady>): Promise<Worker<Record<string, never>>> {
  return startWorker<Record<string, never>>(
    join(ROOT, "bench/workers/x402-client.ts"),
    [JSON.stringify({ rpc: official.ready.rpc, caFile: official.ready.caFile })],
    { env: { ...process.env, BENCH_PAYER_SECRET: official.ready.secret } },
  );
}

function proxyConfig(o: OfficialReady, env: Bench["env"]): Record<string, unknown> {
  return {
    listen: "127.0.0.1:0",
    admin_listen: "127.0.0.1:0",
    stoka_env: "test",
    paid_hosts: [{ host: HOST, upstream: o.url, pay_to: [o.payTo] }],
    gateway: { upstream: o.url },
    wallet: { rpc_url: o.rpc, rpc_ca_files: [o.caFile], ledger_close_seconds: 5 },
    upstream: { ca_files: [o.caFile] },
    budgets: [{ name: "bench", per_request_max: "0.01 USDC", limits: { day: "1000 USDC" } }],
    tls: { ca_cert_file: env.caCertFile, ca_key_file: env.caKeyFile },
  };
}

export async function runOfficial(bench: Bench): Promise<OfficialResult> {
  const { options } = bench;
  bench.log(
    "\n## official: the official x402 v2 server, paid in-process by @x402/fetch vs through stoka-proxy",
  );
  const official = await startWorker<OfficialReady>(join(ROOT, "bench/workers/official.ts"), [
    bench.env.freshDir("official"),
  ]);
  const notes: string[] = [];
  const paid = { client: 0, proxy: 0, settlements: 0 };
  try {
    const o = official.ready;
    const direct = `${o.url}${o.path}`;
    const viaProxy = `http://${HOST}${o.path}`;
    const config = proxyConfig(o, bench.env);
    const before = await official.call<OfficialStats>({ type: "stats" });
    const clientRun = async (c: Worker<Record<string, never>>, count: number): Promise<ClientRun> => {
      const { result } = await c.call<{ result: ClientRun }>({ type: "run", url: direct, count });
      paid.client += result.paid;
      if (result.errors > 0)
        notes.push(`official client: ${result.errors} errors (${result.firstError ?? ""})`);
      return result;
    };
    const proxyRun = async (url: string, count: number): Promise<RunResult> => {
      const spec: RunSpec = {
        mode: "absolute",
        proxy: url,
        target: viaProxy,
        connections: 1,
        count,
        countHeader: "x-stoka-proxy-paid",
        requestTimeoutMs: 30_000,
      };
      const { result } = await bench.gen.call<{ result: RunResult }>({ type: "run", spec });
      paid.proxy += result.withHeader;
      if (result.errors > 0)
        notes.push(`via stoka-proxy: ${result.errors} errors (${result.firstError ?? ""})`);
      return result;
    };

    const coldRuns = options.quick ? 1 : 5;
    const clientMs: number[] = [];
    const proxyMs: number[] = [];
    for (let i = 0; i < coldRuns; i++) {
      const c = await startClient(official);
      try {
        clientMs.push((await clientRun(c, 1)).latenciesMs[0] ?? Number.NaN);
      } finally {
        await c.stop();
      }
      const p = await startStoka(bench.env, config, o.secret, "stoka-official-cold");
      try {
        proxyMs.push((await proxyRun(p.url as string, 1)).latencyUs.first / 1000);
      } finally {
        await p.stop();
      }
    }
    bench.log(
      `  cold: client ${clientMs.map((v) => v.toFixed(1)).join(", ")} ms; via proxy ${proxyMs.map((v) => v.toFixed(1)).join(", ")} ms`,
    );

    const perRound = options.quick ? 5 : 30;
    const client = await startClient(official);
    const proxy = await startStoka(bench.env, config, o.secret, "stoka-official");
    const proxyP50: number[] = [];
    const proxyP90: number[] = [];
    const clientP50: number[] = [];
    const clientP90: number[] = [];
    try {
      await clientRun(client, 5);
      await proxyRun(proxy.url as string, 5);
      for (let r = 0; r < options.rounds; r++) {
        const c = await clientRun(client, perRound);
        clientP50.push(c.p50Ms);
        clientP90.push(c.p90Ms);
        const p = await proxyRun(proxy.url as string, perRound);
        proxyP50.push(p.latencyUs.p50 / 1000);
        proxyP90.push(p.latencyUs.p90 / 1000);
      }
    } finally {
      await client.stop();
      await proxy.stop();
    }
    const after = await official.call<OfficialStats>({ type: "stats" });
    paid.settlements = after.settlements - before.settlements;
    if (paid.settlements !== paid.client + paid.proxy)
      notes.push(
        `the server settled ${paid.settlements} payments for ${paid.client + paid.proxy} paid answers`,
      );
    const warm = {
      requests: perRound * options.rounds,
      clientP50Ms: median(clientP50),
      clientP90Ms: median(clientP90),
      proxyP50Ms: median(proxyP50),
      proxyP90Ms: median(proxyP90),
      ratio: ratio(median(proxyP50), median(clientP50)),
    };
    bench.log(
      `  warm p50: client ${warm.clientP50Ms.toFixed(1)} ms, via proxy ${warm.proxyP50Ms.toFixed(1)} ms (${warm.ratio.toFixed(2)}×)`,
    );
    return {
      id: "official",
      title:
        "Official x402 v2 server: paid in-process by @x402/fetch + @x402/stellar vs paid through stoka-proxy",
      price: o.price,
      cold: {
        runs: coldRuns,
        clientMs,
        proxyMs,
        clientMedianMs: median(clientMs),
        proxyMedianMs: median(proxyMs),
        ratio: ratio(median(proxyMs), median(clientMs)),
      },
      warm,
      quoteAhead:
        "n/a: quote-ahead prices from a stoka manifest's pricing; see the paid scenario's quote-ahead rows",
      paid,
      notes,
    };
  } finally {
    await official.stop();
  }
}
