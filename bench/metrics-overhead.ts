/**
 * `npm run bench`: request throughput through the proxy with metrics on and off. Not a test:
 * it prints numbers and gates nothing. Traffic is loopback only and bounded in count.
 *
 * Two workloads per setting: unpaid requests to a paid host (the manifest: buffering, headers,
 * logging and metrics, no payment) and paid stores (402 → sign → retry).
 */
import { Writable } from "node:stream";
import { ProxyAgent, request } from "undici";
import { createLogger } from "../src/observability/logger.js";
import { startSandboxWithProxy } from "../src/sandbox/with-proxy.js";

const UNPAID = Number(process.env.BENCH_UNPAID ?? 3000);
const PAID = Number(process.env.BENCH_PAID ?? 200);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);

async function drive(
  agent: ProxyAgent,
  n: number,
  make: (i: number) => Parameters<typeof request>,
): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        const i = next++;
        const [url, opts] = make(i);
        const res = await request(url, { ...opts, dispatcher: agent });
        await res.body.dump();
        if (res.statusCode >= 400) throw new Error(`request ${i} answered ${res.statusCode}`);
      }
    }),
  );
  return n / (Number(process.hrtime.bigint() - started) / 1e9);
}

async function run(metrics: boolean): Promise<{ unpaid: number; paid: number }> {
  const quiet = createLogger("info", new Writable({ write: (_c, _e, cb) => cb() }));
  const world = await startSandboxWithProxy(
    quiet,
    { listen: "127.0.0.1:0", adminListen: "127.0.0.1:0" },
    {
      configure: (c) => {
        c.metricsEnabled = metrics;
        const b = c.budgets[0];
        if (b) b.limits = [{ period: { kind: "calendar", unit: "day" }, amount: 10n ** 12n }];
      },
    },
  );
  const agent = new ProxyAgent({ uri: world.proxy.url, connections: CONCURRENCY });
  try {
    const unpaid = await drive(agent, UNPAID, () => [
      "http://test.api.stoka.space/.well-known/stoka.json",
      { method: "GET" },
    ]);
    const paid = await drive(agent, PAID, (i) => [
      "http://test.api.stoka.space/v1/store",
      { method: "POST", headers: { "x-stoka-key": `bench-${metrics}-${i}` }, body: "x".repeat(42) },
    ]);
    return { unpaid, paid };
  } finally {
    await agent.close();
    await world.close();
  }
}

const results: Record<string, { unpaid: number; paid: number }> = {};
// Alternate twice to spread warm-up and noise over both settings.
for (const setting of [false, true, false, true]) {
  const r = await run(setting);
  const key = setting ? "metrics on" : "metrics off";
  const prev = results[key];
  results[key] = prev ? { unpaid: Math.max(prev.unpaid, r.unpaid), paid: Math.max(prev.paid, r.paid) } : r;
}
const on = results["metrics on"];
const off = results["metrics off"];
console.log(`requests/second (best of 2, concurrency ${CONCURRENCY}):`);
for (const [k, v] of Object.entries(results))
  console.log(
    `  ${k.padEnd(12)} unpaid ${v.unpaid.toFixed(0).padStart(7)}   paid ${v.paid.toFixed(1).padStart(7)}`,
  );
if (on && off) {
  console.log(
    `overhead of metrics: unpaid ${(100 * (1 - on.unpaid / off.unpaid)).toFixed(1)}%, paid ${(100 * (1 - on.paid / off.paid)).toFixed(1)}%`,
  );
}
