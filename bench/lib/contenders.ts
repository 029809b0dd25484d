import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { stringify } from "yaml";
import { startWorker, stopChild } from "./worker.js";
import type { BenchEnv } from "./env.js";

/**
 * Everything a scenario can put in front of the upstream, each in its own process so its CPU
 * (utime + stime from /proc) and memory are its own:
 *
 *   direct          no proxy: the generator talks to the upstream
 *   stoka-proxy     `node dist/cli/main.js start` with a generated config, default log level
 *                   (info: one JSON line per request) written to a file
 *   bare-node       http.request + keep-alive agent; CONNECT → blind tunnel
 *   http-proxy-3    http-proxy-3 + keep-alive agent; CONNECT → blind tunnel
 *   bare-node-mitm  CONNECT → TLS with a leaf from the test CA → keep-alive https to the target
 *   tinyproxy       Debian's tinyproxy, its default LogLevel (Info) to /dev/null (it fsyncs each line)
 *   mitmproxy       Debian's mitmdump, regular mode, default verbosity to a file
 */
export type ContenderName =
  "direct" | "stoka-proxy" | "bare-node" | "http-proxy-3" | "bare-node-mitm" | "tinyproxy" | "mitmproxy";

export const ALL_CONTENDERS: ContenderName[] = [
  "direct",
  "stoka-proxy",
  "bare-node",
  "http-proxy-3",
  "bare-node-mitm",
  "tinyproxy",
  "mitmproxy",
];

export interface Contender {
  name: ContenderName;
  /** The proxy's URL (http://127.0.0.1:P); undefined for direct. */
  url?: string;
  /** The process whose CPU and memory are measured. */
  pid?: number;
  /** Where its log goes, and how much it wrote (bytes), for the report. */
  logFile?: string;
  stop(): Promise<void>;
}

const ROOT = new URL("../..", import.meta.url).pathname;

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  child: ChildProcess,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what} exited before it was ready`);
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

function spawnLogged(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(logFile, "a");
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", fd, fd], env, detached: false });
  closeSync(fd);
  return child;
}

export function logBytes(c: Contender): number {
  try {
    return c.logFile ? statSync(c.logFile).size : 0;
  } catch {
    return 0;
  }
}

/** stoka-proxy's config for the throughput scenarios: the upstream's two paid hosts. */
export function stokaBenchConfig(env: BenchEnv): Record<string, unknown> {
  return {
    listen: "127.0.0.1:0",
    admin_listen: "127.0.0.1:0",
    stoka_env: "test",
    paid_hosts: [
      { host: "127.0.0.2", upstream: `http://127.0.0.2:${env.ports.paid_http}` },
      { host: "127.0.0.3", upstream: `https://127.0.0.3:${env.ports.paid_https}` },
    ],
    gateway: { upstream: `http://127.0.0.2:${env.ports.paid_http}` },
    // A wallet and a budget, as deployed; nothing here answers 402, so the RPC is never called.
    wallet: { rpc_url: "https://127.0.0.1:9/" },
    budgets: [{ name: "bench", per_request_max: "0.01 USDC", limits: { day: "1 USDC" } }],
    upstream: { ca_files: [env.upstreamCaFile] },
    tls: { ca_cert_file: env.caCertFile, ca_key_file: env.caKeyFile },
  };
}

export async function startStoka(
  env: BenchEnv,
  config: Record<string, unknown>,
  secret: string,
  tag = "stoka-proxy",
  /** A program the proxy's Node runs under (valgrind and its flags: the instructions scenario). */
  wrap: string[] = [],
): Promise<Contender & { adminUrl: string }> {
  if ("log_level" in config) throw new Error("the bench measures stoka-proxy at its default log level");
  const dir = env.freshDir(tag);
  const configPath = join(dir, "config.yaml");
  writeFileSync(configPath, stringify({ ...config, data_dir: join(dir, "data") }));
  const logFile = join(dir, "proxy.log");
  const main = join(ROOT, "dist/cli/main.js");
  if (!existsSync(main)) throw new Error("dist/cli/main.js is missing: run `npm run build` first");
  // BENCH_STOKA_NODE_ARGS: extra Node flags for the proxy only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_STOKA_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);
  const [cmd, ...wrapArgs] = wrap.length > 0 ? [...wrap, process.execPath] : [process.execPath];
  const child = spawnLogged(
    cmd as string,
    [...wrapArgs, ...nodeArgs, main, "start", "--config", configPath],
    logFile,
    {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      STELLAR_SECRET: secret,
    },
  );
  let url = "";
  let adminUrl = "";
  await waitFor(
    "stoka-proxy",
    () => {
      const text = readFileSync(logFile, "utf8");
      const m = /"proxy":"(http:\/\/[^"]+)","admin":"(http:\/\/[^"]+)"/.exec(text);
      if (!m?.[1] || !m[2]) return false;
      url = m[1];
      adminUrl = m[2];
      return true;
    },
    child,
    wrap.length > 0 ? 300_000 : undefined,
  ).catch((e: Error) => {
    child.kill("SIGKILL");
    throw new Error(`${e.message}\n${readFileSync(logFile, "utf8").slice(-2000)}`);
  });
  return {
    name: "stoka-proxy",
    url,
    adminUrl,
    pid: child.pid as number,
    logFile,
    stop: () => stopChild(child),
  };
}

export async function startBare(
  env: BenchEnv,
  name: ContenderName,
  mode: string,
  wrap: string[] = [],
): Promise<Contender> {
  const w = await startWorker<{ url: string }>(
    join(ROOT, "bench/workers/bare-node.ts"),
    [
      JSON.stringify({
        mode,
        caCertFile: env.caCertFile,
        caKeyFile: env.caKeyFile,
        upstreamCaFile: env.upstreamCaFile,
      }),
    ],
    wrap.length > 0 ? { wrap, timeoutMs: 300_000 } : {},
  );
  return { name, url: w.ready.url, pid: w.pid, stop: () => w.stop() };
}

async function startTinyproxy(env: BenchEnv): Promise<Contender> {
  const dir = env.freshDir("tinyproxy");
  const port = await freePort();
  const conf = join(dir, "tinyproxy.conf");
  // Debian's /etc/tinyproxy/tinyproxy.conf, but for the port, MaxClients (100 there) and the log
  // file: tinyproxy fsyncs after every log line, which made it ten times slower here at its
  // default LogLevel Info; stoka-proxy does not fsync its log, so tinyproxy logs to /dev/null
  // (the lines are still formatted and written, at the same level).
  writeFileSync(
    conf,
    [
      `Port ${port}`,
      "Listen 127.0.0.1",
      "Timeout 600",
      'LogFile "/dev/null"',
      "LogLevel Info",
      `PidFile "${join(dir, "tinyproxy.pid")}"`,
      "MaxClients 1024",
      "Allow 127.0.0.1",
      'ViaProxyName "tinyproxy"',
      "",
    ].join("\n"),
  );
  const child = spawnLogged("tinyproxy", ["-d", "-c", conf], join(dir, "stdout.log"), process.env);
  await waitFor("tinyproxy", () => canConnect(port), child);
  return {
    name: "tinyproxy",
    url: `http://127.0.0.1:${port}`,
    pid: child.pid as number,
    stop: () => stopChild(child),
  };
}

async function startMitmproxy(env: BenchEnv): Promise<Contender> {
  const dir = env.freshDir("mitmproxy");
  const port = await freePort();
  const logFile = join(dir, "mitmdump.log");
  const child = spawnLogged(
    "mitmdump",
    [
      "--mode",
      "regular",
      "--listen-host",
      "127.0.0.1",
      "--listen-port",
      String(port),
      "--set",
      `confdir=${env.mitmConfDir}`,
      "--set",
      `ssl_verify_upstream_trusted_ca=${env.upstreamCaFile}`,
    ],
    logFile,
    process.env,
  );
  await waitFor(
    "mitmdump",
    async () => existsSync(env.mitmCaFile) && (await canConnect(port)),
    child,
    60_000,
  );
  return {
    name: "mitmproxy",
    url: `http://127.0.0.1:${port}`,
    pid: child.pid as number,
    logFile,
    stop: () => stopChild(child),
  };
}

export async function startContender(env: BenchEnv, name: ContenderName, secret: string): Promise<Contender> {
  switch (name) {
    case "direct":
      return { name, stop: () => Promise.resolve() };
    case "stoka-proxy":
      return startStoka(env, stokaBenchConfig(env), secret);
    case "bare-node":
      return startBare(env, name, "forward");
    case "http-proxy-3":
      return startBare(env, name, "http-proxy-3");
    case "bare-node-mitm":
      return startBare(env, name, "mitm");
    case "tinyproxy":
      return startTinyproxy(env);
    case "mitmproxy":
      return startMitmproxy(env);
  }
}

/** Versions of the peers, for the machine description. */
export function peerVersions(): Record<string, string> {
  const first = (cmd: string, args: string[]) => {
    try {
      const out = execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      return out.split("\n")[0]?.trim() ?? "";
    } catch (e) {
      // wrk -v prints its version and exits 1.
      const out = `${(e as { stdout?: string }).stdout ?? ""}${(e as { stderr?: string }).stderr ?? ""}`;
      return out.split("\n")[0]?.trim() || "not installed";
    }
  };
  const pkg = (name: string) => {
    try {
      return (
        JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")) as {
          version: string;
        }
      ).version;
    } catch {
      return "?";
    }
  };
  return {
    tinyproxy: first("tinyproxy", ["-v"]),
    mitmproxy: first("mitmdump", ["--version"]),
    wrk: first("wrk", ["-v"]),
    curl: first("curl", ["--version"]),
    "http-proxy-3": pkg("http-proxy-3"),
    undici: pkg("undici"),
  };
}
