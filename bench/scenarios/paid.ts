import { join } from "node:path";
import { startStoka } from "../lib/contenders.js";
import type { Contender } from "../lib/contenders.js";
import { measure, nodeLoad, summarize } from "../lib/measure.js";
import type { Bench, Sample, Summary, UpstreamProbe } from "../lib/measure.js";
import { median } from "../lib/stats.js";
import { startWorker } from "../lib/worker.js";
import type { Worker } from "../lib/worker.js";
import type { RunSpec } from "../workers/loadgen.js";

/**
 * Paid requests: a 1 KiB stoka store (`POST /v1/store`, a unique X-Stoka-Key each) through
 * stoka-proxy against the sandbox emulator, which verifies every payment for real, and the fake
 * Soroban RPC, which counts its calls by method. What the emulator charged is read back, so a
 * "paid" answer is only counted as a payment the upstream side saw.
 *
 *   cold    the first paid request of a freshly started proxy (manifest, first RPC calls)
 *   warm    one store in flight, after a warm-up
 *   32      32 stores in flight: paid stores per second, CPU per payment, RPC calls per payment
 *   quote-ahead  warm and 32 again with `quote_ahead: [store]` (a second proxy): each store is
 *           paid with its first request, priced from the manifest (docs/configuration.md)
 *
 * The comparison with the official in-process x402 client is the `official` scenario.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const STORE_BYTES = 1024;
/** store price for 1 KiB at the default 30-day TTL: 1000 + 1 × (100 + 30 × 10) atomic. */
const STORE_PRICE = 1400n;

interface SandboxReady {
  emulator: string;
  rpc: string;
  caFile: string;
  payer: string;
  secret: string;
}
interface SandboxStats {
  charged: string;
  charges: number;
  rpcCalls: Record<string, number>;
}

export interface PaidPhase {
  summary: Summary;
  samples: Sample[];
  paid: number;
  paidPerSecond: number;
  proxyCpuMsPerPayment: number;
  /** Emulator charges during the phase (must equal `paid`). */
  charges: number;
  chargedAtomic: string;
  rpcCallsPerPayment: Record<string, number>;
}

export interface PaidResult {
  id: "paid";
  title: string;
  price: string;
  cold: { runs: number; latenciesMs: number[]; medianMs: number };
  warm: PaidPhase;
  inflight32: PaidPhase;
  /** The same with `quote_ahead: [store]` on the paid host (absent in results from before it). */
  warmQuoteAhead?: PaidPhase;
  inflight32QuoteAhead?: PaidPhase;
  notes: string[];
}

function stokaPaidConfig(sb: SandboxReady, env: Bench["env"]): Record<string, unknown> {
  return {
    listen: "127.0.0.1:0",
    admin_listen: "127.0.0.1:0",
    stoka_env: "test",
    paid_hosts: [{ host: "test.api.stoka.space", upstream: sb.emulator }],
    gateway: { upstream: sb.emulator },
    wallet: { rpc_url: sb.rpc, rpc_ca_files: [sb.caFile], ledger_close_seconds: 5 },
    upstream: { ca_files: [sb.caFile] },
    budgets: [{ name: "bench", per_request_max: "0.01 USDC", limits: { day: "1000 USDC" } }],
    tls: { ca_cert_file: env.caCertFile, ca_key_file: env.caKeyFile },
  };
}

function storeSpec(proxy: string, connections: number, extra: Partial<RunSpec>): RunSpec {
  return {
    mode: "absolute",
    proxy,
    target: "http://test.api.stoka.space/v1/store",
    method: "POST",
    bodyBytes: STORE_BYTES,
    uniqueHeader: "x-stoka-key",
    countHeader: "x-stoka-proxy-paid",
    connections,
    requestTimeoutMs: 30_000,
    ...extra,
  };
}

async function phase(
  bench: Bench,
  sandbox: Worker<SandboxReady>,
  proxy: Contender,
  connections: number,
): Promise<PaidPhase> {
  const { options } = bench;
  const probe: UpstreamProbe = { pid: sandbox.pid, connections: () => Promise.resolve(Number.NaN) };
  const url = proxy.url as string;
  await nodeLoad(bench, storeSpec(url, connections, { durationMs: options.warmupSeconds * 1000 }));
  const before = await sandbox.call<SandboxStats>({ type: "stats" });
  const samples: Sample[] = [];
  for (let r = 1; r <= options.rounds; r++) {
    samples.push(
      await measure(bench, proxy, connections, r, probe, () =>
        nodeLoad(bench, storeSpec(url, connections, { durationMs: options.roundSeconds * 1000 })),
      ),
    );
  }
  const after = await sandbox.call<SandboxStats>({ type: "stats" });
  const paid = samples.reduce((a, s) => a + s.withHeader, 0);
  const cpu = samples.reduce((a, s) => a + s.proxyCpuSeconds, 0);
  const rpcCallsPerPayment: Record<string, number> = {};
  for (const [method, n] of Object.entries(after.rpcCalls)) {
    const d = n - (before.rpcCalls[method] ?? 0);
    if (d > 0) rpcCallsPerPayment[method] = d / Math.max(1, paid);
  }
  const charges = after.charges - before.charges;
  return {
    summary: summarize(samples),
    samples,
    paid,
    paidPerSecond: median(samples.map((s) => s.withHeader / s.elapsedS)),
    proxyCpuMsPerPayment: (cpu / Math.max(1, paid)) * 1000,
    charges,
    chargedAtomic: (BigInt(after.charged) - BigInt(before.charged)).toString(),
    rpcCallsPerPayment,
  };
}

export async function runPaid(bench: Bench): Promise<PaidResult> {
  const { options } = bench;
  bench.log("\n## paid: 1 KiB stores paid by stoka-proxy against the sandbox emulator");
  const sandbox = await startWorker<SandboxReady>(join(ROOT, "bench/workers/sandbox.ts"), [
    bench.env.freshDir("sandbox"),
  ]);
  const notes: string[] = [];
  try {
    const config = stokaPaidConfig(sandbox.ready, bench.env);
    const coldRuns = options.quick ? 1 : 3;
    const cold: number[] = [];
    for (let i = 0; i < coldRuns; i++) {
      const p = await startStoka(bench.env, config, sandbox.ready.secret, "stoka-paid-cold");
      try {
        const { result } = await bench.gen.call<{
          result: { latencyUs: { first: number }; withHeader: number };
        }>({
          type: "run",
          spec: storeSpec(p.url as string, 1, { count: 1 }),
        });
        if (result.withHeader !== 1) notes.push(`cold run ${i + 1}: the store was not paid`);
        cold.push(result.latencyUs.first / 1000);
      } finally {
        await p.stop();
      }
    }
    bench.log(`  cold: first paid store ${cold.map((v) => v.toFixed(1)).join(", ")} ms`);
    const proxy = await startStoka(bench.env, config, sandbox.ready.secret, "stoka-paid");
    try {
      const warm = await phase(bench, sandbox, proxy, 1);
      const inflight32 = await phase(bench, sandbox, proxy, 32);
      await proxy.stop();
      const quoting = await startStoka(
        bench.env,
        {
          ...config,
          paid_hosts: (config.paid_hosts as object[]).map((h) => ({ ...h, quote_ahead: ["store"] })),
        },
        sandbox.ready.secret,
        "stoka-paid-quote-ahead",
      );
      let warmQuoteAhead: PaidPhase;
      let inflight32QuoteAhead: PaidPhase;
      try {
        warmQuoteAhead = await phase(bench, sandbox, quoting, 1);
        inflight32QuoteAhead = await phase(bench, sandbox, quoting, 32);
      } finally {
        await quoting.stop();
      }
      for (const [name, p] of [
        ["warm", warm],
        ["32 in flight", inflight32],
        ["warm, quote-ahead", warmQuoteAhead],
        ["32 in flight, quote-ahead", inflight32QuoteAhead],
      ] as const) {
        if (p.charges !== p.paid)
          notes.push(`${name}: the proxy answered ${p.paid} paid stores, the emulator charged ${p.charges}`);
        if (BigInt(p.chargedAtomic) !== BigInt(p.charges) * STORE_PRICE)
          notes.push(
            `${name}: charged ${p.chargedAtomic} atomic for ${p.charges} charges (expected ${STORE_PRICE} each)`,
          );
      }
      bench.log(
        `  32 in flight: ${inflight32.paidPerSecond.toFixed(1)} paid/s, ${inflight32.proxyCpuMsPerPayment.toFixed(2)} ms proxy CPU per payment, RPC per payment ${JSON.stringify(inflight32.rpcCallsPerPayment)}`,
      );
      bench.log(
        `  quote-ahead: warm p50 ${(warmQuoteAhead.summary.p50Us / 1000).toFixed(2)} ms (normal ${(warm.summary.p50Us / 1000).toFixed(2)} ms); 32 in flight ${inflight32QuoteAhead.paidPerSecond.toFixed(1)} paid/s, ${inflight32QuoteAhead.proxyCpuMsPerPayment.toFixed(2)} ms proxy CPU per payment`,
      );
      return {
        id: "paid",
        title: "Paid 1 KiB stores through stoka-proxy (sandbox emulator + fake Soroban RPC)",
        price: STORE_PRICE.toString(),
        cold: { runs: coldRuns, latenciesMs: cold, medianMs: median(cold) },
        warm,
        inflight32,
        warmQuoteAhead,
        inflight32QuoteAhead,
        notes,
      };
    } finally {
      await proxy.stop();
    }
  } finally {
    await sandbox.stop();
  }
}
