import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { clockTicks, statCpuTicks } from "./proc.js";

/**
 * wrk (Debian's) as the plain-HTTP load generator: one thread, N keep-alive connections.
 * wrk has no proxy support; it reaches a proxy by sending absolute-form request targets
 * (`GET http://host:port/path`, RFC 9112 §3.2.2) to the proxy's address, with the target's
 * Host header, which is exactly what an HTTP_PROXY client sends. It cannot CONNECT.
 *
 * Its CPU is read from the shell that waits for it (cutime + cstime of that shell), since a
 * finished process has no /proc entry left to read.
 */
export interface WrkResult {
  requests: number;
  elapsedMs: number;
  errors: number;
  errorKinds: Record<string, number>;
  latencyUs: { p50: number; p90: number; p99: number; mean: number; max: number };
  cpuSeconds: number;
}

const SCRIPT = `
wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Host"] = os.getenv("BENCH_HOST")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
`;

let scriptFile: string | undefined;

export function runWrk(opts: {
  dir: string;
  /** Where wrk connects: the proxy, or the upstream for direct. */
  connectTo: string;
  /** What the app wants: absolute URL (through a proxy) or the same origin (direct). */
  target: string;
  viaProxy: boolean;
  connections: number;
  seconds: number;
}): Promise<WrkResult> {
  scriptFile ??= (() => {
    const f = join(opts.dir, "bench.lua");
    writeFileSync(f, SCRIPT);
    return f;
  })();
  const target = new URL(opts.target);
  const path = opts.viaProxy ? target.href : `${target.pathname}${target.search}`;
  const seconds = Math.max(1, Math.round(opts.seconds));
  const args = [
    "-t1",
    `-c${opts.connections}`,
    `-d${seconds}s`,
    "--timeout",
    "10s",
    "-s",
    scriptFile,
    opts.connectTo,
  ];
  const shell = 'wrk "$@"; rc=$?; read -r s < /proc/$$/stat; echo "PROCSTAT $s"; exit $rc';
  return new Promise((resolve, reject) => {
    execFile(
      "sh",
      ["-c", shell, "sh", ...args],
      {
        env: { ...process.env, BENCH_PATH: path, BENCH_HOST: target.host },
        timeout: (seconds + 30) * 1000,
        maxBuffer: 1 << 20,
      },
      (err, stdout, stderr) => {
        const json = /^BENCH_JSON (.*)$/m.exec(stdout);
        const stat = /^PROCSTAT (.*)$/m.exec(stdout);
        if (err || !json?.[1]) {
          reject(new Error(`wrk failed: ${err?.message ?? ""}\n${stdout}\n${stderr}`));
          return;
        }
        const r = JSON.parse(json[1]) as Record<string, number>;
        // The shell's children's CPU: wrk's, since the shell has waited for it.
        const cpuSeconds = statCpuTicks(stat?.[1] ?? "").children / clockTicks();
        const errorKinds = {
          connect: r.connect ?? 0,
          read: r.read ?? 0,
          write: r.write ?? 0,
          status: r.status ?? 0,
          timeout: r.timeout ?? 0,
        };
        resolve({
          requests: r.requests ?? 0,
          elapsedMs: (r.duration_us ?? 0) / 1000,
          errors: Object.values(errorKinds).reduce((a, b) => a + b, 0),
          errorKinds,
          latencyUs: {
            p50: r.p50 ?? NaN,
            p90: r.p90 ?? NaN,
            p99: r.p99 ?? NaN,
            mean: r.mean ?? NaN,
            max: r.max ?? NaN,
          },
          cpuSeconds,
        });
      },
    );
  });
}
