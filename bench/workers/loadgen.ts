import { readFileSync } from "node:fs";
import { Pool, ProxyAgent } from "undici";
import type { Dispatcher } from "undici";
import { percentileSorted } from "../lib/stats.js";
import { serveIpc } from "./ipc.js";

/**
 * The Node load generator, in its own process so its CPU is its own: N keep-alive connections
 * (undici), each with one request in flight, for a duration or a count.
 *
 *   direct    Pool → the upstream itself
 *   absolute  Pool → the proxy, absolute-form request targets (what HTTP_PROXY clients send)
 *   connect   ProxyAgent → CONNECT per connection, then TLS (https://) or plain HTTP inside,
 *             keep-alive inside the tunnel (what HTTPS_PROXY clients do)
 *
 * A fresh pool per run, so each run opens its own client connections (upstream connections
 * are compared with them). `keep` leaves the connections open for the memory scenario.
 */
export interface RunSpec {
  mode: "direct" | "absolute" | "connect";
  target: string;
  proxy?: string;
  connections: number;
  /** Requests in flight (default: one per connection). */
  inflight?: number;
  durationMs?: number;
  count?: number;
  method?: string;
  bodyBytes?: number;
  /** A header given a unique value per request (X-Stoka-Key for stores). */
  uniqueHeader?: string;
  /** Count the answers that carry this header (X-Stoka-Proxy-Paid). */
  countHeader?: string;
  caFiles?: string[];
  requestTimeoutMs?: number;
  /**
   * Keep this dispatcher's connections open under this name until `close`; a later run with
   * the same name sends on them again (same target, same connections).
   */
  keep?: string;
  /** Source address of the connections to the proxy or upstream (127.0.0.x). */
  localAddress?: string;
}

export interface RunResult {
  requests: number;
  errors: number;
  firstError?: string;
  statuses: Record<string, number>;
  withHeader: number;
  elapsedMs: number;
  latencyUs: { p50: number; p90: number; p99: number; mean: number; max: number; first: number };
}

const kept = new Map<string, Dispatcher>();
const keptTargets = new Map<string, { origin: string; path: string }>();

function makeDispatcher(spec: RunSpec): { dispatcher: Dispatcher; origin: string; path: string } {
  const target = new URL(spec.target);
  const ca = (spec.caFiles ?? []).map((f) => readFileSync(f, "utf8"));
  const timeouts = {
    headersTimeout: spec.requestTimeoutMs ?? 15_000,
    bodyTimeout: spec.requestTimeoutMs ?? 15_000,
  };
  const path = `${target.pathname}${target.search}`;
  const local = spec.localAddress ? { localAddress: spec.localAddress } : {};
  switch (spec.mode) {
    case "direct":
      return {
        dispatcher: new Pool(target.origin, {
          connections: spec.connections,
          pipelining: 1,
          keepAliveTimeout: 60_000,
          connect: ca.length > 0 ? { ca } : {},
          ...local,
          ...timeouts,
        }),
        origin: target.origin,
        path,
      };
    case "absolute":
      if (!spec.proxy) throw new Error("absolute mode needs a proxy");
      return {
        dispatcher: new Pool(spec.proxy, {
          connections: spec.connections,
          pipelining: 1,
          keepAliveTimeout: 60_000,
          ...local,
          ...timeouts,
        }),
        origin: spec.proxy,
        path: target.href,
      };
    case "connect":
      if (!spec.proxy) throw new Error("connect mode needs a proxy");
      return {
        dispatcher: new ProxyAgent({
          uri: spec.proxy,
          proxyTunnel: true,
          connections: spec.connections,
          pipelining: 1,
          keepAliveTimeout: 60_000,
          requestTls: ca.length > 0 ? { ca } : {},
          // The CONNECTs go out through this client: the source address is set on it.
          clientFactory: (origin: URL, opts: object) => new Pool(origin, { ...opts, ...local }),
          ...timeouts,
        }),
        origin: target.origin,
        path,
      };
  }
}

async function run(spec: RunSpec): Promise<RunResult> {
  const again = spec.keep ? kept.get(spec.keep) : undefined;
  const againTarget = spec.keep ? keptTargets.get(spec.keep) : undefined;
  const { dispatcher, origin, path } =
    again && againTarget ? { dispatcher: again, ...againTarget } : makeDispatcher(spec);
  const target = new URL(spec.target);
  const method = (spec.method ?? "GET") as Dispatcher.HttpMethod;
  const body = spec.bodyBytes ? Buffer.alloc(spec.bodyBytes, "x") : undefined;
  const inflight = spec.inflight ?? spec.connections;
  const count = spec.count ?? Number.POSITIVE_INFINITY;
  const durationMs = spec.durationMs ?? Number.POSITIVE_INFINITY;
  if (!Number.isFinite(count) && !Number.isFinite(durationMs)) throw new Error("give a count or a duration");
  // Hard stop: nothing runs for longer than asked plus a margin.
  const hardMs = (Number.isFinite(durationMs) ? durationMs : 600_000) + 60_000;
  let latencies = new Float64Array(1 << 16);
  let n = 0;
  let started = 0;
  let errors = 0;
  let withHeader = 0;
  let firstError: string | undefined;
  const statuses: Record<string, number> = {};
  const unique = `${process.pid}-${Date.now()}`;
  const t0 = performance.now();
  const until = t0 + durationMs;
  const hard = t0 + hardMs;
  const worker = async () => {
    while (started < count) {
      const now = performance.now();
      if (now >= until || now >= hard) return;
      const i = started++;
      const headers: Record<string, string> = {};
      if (spec.mode === "absolute") headers.host = target.host;
      if (spec.uniqueHeader) headers[spec.uniqueHeader] = `bench-${unique}-${i}`;
      if (body) headers["content-type"] = "application/octet-stream";
      const s = performance.now();
      try {
        const res = await dispatcher.request({ origin, path, method, headers, body });
        await res.body.dump();
        const key = String(res.statusCode);
        statuses[key] = (statuses[key] ?? 0) + 1;
        if (spec.countHeader && res.headers[spec.countHeader] !== undefined) withHeader++;
        if (res.statusCode >= 400) {
          errors++;
          firstError ??= `status ${res.statusCode}`;
        }
      } catch (e) {
        errors++;
        firstError ??= `${(e as Error).name}: ${(e as Error).message}`;
        statuses.error = (statuses.error ?? 0) + 1;
        // A refused or broken connection must not spin: back off a little.
        await new Promise((r) => setTimeout(r, 5));
      }
      if (n === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[n++] = (performance.now() - s) * 1000;
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  const elapsedMs = performance.now() - t0;
  const first = n > 0 ? (latencies[0] as number) : Number.NaN;
  const sorted = latencies.slice(0, n).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  if (spec.keep) {
    kept.set(spec.keep, dispatcher);
    keptTargets.set(spec.keep, { origin, path });
  } else await dispatcher.close();
  return {
    requests: n,
    errors,
    ...(firstError ? { firstError } : {}),
    statuses,
    withHeader,
    elapsedMs,
    latencyUs: {
      p50: percentileSorted(sorted, 50),
      p90: percentileSorted(sorted, 90),
      p99: percentileSorted(sorted, 99),
      mean: n > 0 ? sum / n : Number.NaN,
      max: n > 0 ? (sorted[n - 1] as number) : Number.NaN,
      first,
    },
  };
}

serveIpc(
  {},
  async (msg) => {
    if (msg.type === "run") return { result: await run(msg.spec as RunSpec) };
    if (msg.type === "close") {
      const d = kept.get(String(msg.name));
      kept.delete(String(msg.name));
      keptTargets.delete(String(msg.name));
      await d?.destroy();
      return {};
    }
    throw new Error(`unknown message ${String(msg.type)}`);
  },
  async () => {
    await Promise.all([...kept.values()].map((d) => d.destroy()));
  },
);
