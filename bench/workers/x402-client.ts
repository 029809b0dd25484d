import { readFileSync } from "node:fs";
import { x402Client, wrapFetchWithPayment } from "@x402/fetch";
import { createEd25519Signer } from "@x402/stellar";
import { ExactStellarScheme } from "@x402/stellar/exact/client";
import { installSdkHttpGuard, trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";
import { percentileSorted } from "../lib/stats.js";
import { serveIpc } from "./ipc.js";

/**
 * The official in-process x402 client, as an app would use it without the proxy: Node's fetch
 * wrapped by @x402/fetch, paying with @x402/stellar's exact scheme and a local key. In its own
 * process, so each cold run starts from nothing, like a freshly started proxy.
 *
 * Like the proxy (and the official server), the Stellar SDK's Horizon query for the ledger
 * close time is answered in-process and the fake RPC's CA is trusted: nothing leaves loopback.
 */
interface Options {
  rpc: string;
  caFile: string;
}
const options = JSON.parse(process.argv[2] ?? "{}") as Options;
const secret = process.env.BENCH_PAYER_SECRET ?? "";
installSdkHttpGuard({ ledgerCloseSeconds: 5, timeoutMs: 10_000 });
trustExtraCertificates([readFileSync(options.caFile, "utf8")]);
const network = "stellar:testnet" as const;
const client = new x402Client().register(
  network,
  new ExactStellarScheme(createEd25519Signer(secret, network), { url: options.rpc }),
);
const pay = wrapFetchWithPayment(fetch, client);

async function run(url: string, count: number) {
  const latencies: number[] = [];
  let paid = 0;
  let errors = 0;
  let firstError: string | undefined;
  for (let i = 0; i < count; i++) {
    const s = performance.now();
    try {
      const res = await pay(url, { signal: AbortSignal.timeout(30_000) });
      await res.arrayBuffer();
      if (res.status === 200 && res.headers.get("payment-response")) paid++;
      else {
        errors++;
        firstError ??= `status ${res.status}`;
      }
    } catch (e) {
      errors++;
      firstError ??= (e as Error).message;
    }
    latencies.push(performance.now() - s);
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    latenciesMs: latencies,
    p50Ms: percentileSorted(sorted, 50),
    p90Ms: percentileSorted(sorted, 90),
    paid,
    errors,
    ...(firstError ? { firstError } : {}),
  };
}

serveIpc(
  {},
  async (msg) => {
    if (msg.type === "run") return { result: await run(String(msg.url), Number(msg.count)) };
    throw new Error(`unknown message ${String(msg.type)}`);
  },
  () => Promise.resolve(),
);
