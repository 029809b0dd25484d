import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import type { Sandbox } from "../../src/sandbox/sandbox.js";

/**
 * A real `stoka-proxy start` process in front of an in-test sandbox: its config file, data
 * directory and wallet seed (env) as an operator would give them.
 */
const ROOT = new URL("../..", import.meta.url).pathname;

export interface ProxyProcess {
  child: ChildProcess;
  url: string;
  /** The admin listener (/metrics, /healthz, /readyz). */
  adminUrl: string;
  dataDir: string;
  configPath: string;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function writeProxyConfig(
  sandbox: Sandbox,
  extra: Record<string, unknown> = {},
  dataDir?: string,
): { configPath: string; dataDir: string } {
  const dir = mkdtempSync(join(tmpdir(), "stoka-proc-"));
  const ca = join(dir, "sandbox-ca.pem");
  writeFileSync(ca, sandbox.ca.certPem);
  const data = dataDir ?? join(dir, "data");
  const config = {
    listen: "127.0.0.1:0",
    admin_listen: "127.0.0.1:0",
    stoka_env: "test",
    paid_hosts: [{ host: "test.api.stoka.space", upstream: sandbox.emulator.httpUrl }],
    gateway: { upstream: sandbox.emulator.httpUrl },
    wallet: { rpc_url: sandbox.rpc.url, rpc_ca_files: [ca], ledger_close_seconds: 5 },
    upstream: { ca_files: [ca] },
    data_dir: data,
    log_level: "info",
    ...extra,
  };
  const configPath = join(dir, "config.yaml");
  writeFileSync(configPath, stringify(config));
  return { configPath, dataDir: data };
}

export async function startProxyProcess(
  sandbox: Sandbox,
  configPath: string,
  dataDir: string,
  options: {
    nodeArgs?: string[];
    env?: Record<string, string>;
    fdLimit?: number;
    /** Node arguments that run the CLI instead of the sources under tsx (e.g. a build: starts faster). */
    cli?: string[];
    /** How long to wait for the listeners (default 30 s). */
    startTimeoutMs?: number;
  } = {},
): Promise<ProxyProcess> {
  // prlimit execs the command, so the child's pid stays the proxy's.
  const [command, prefix] = options.fdLimit
    ? ["prlimit", [`--nofile=${options.fdLimit}:${options.fdLimit}`, "--", process.execPath]]
    : [process.execPath, []];
  const child = spawn(
    command,
    [
      ...prefix,
      ...(options.nodeArgs ?? []),
      ...(options.cli ?? ["--import", "tsx", join(ROOT, "src/cli/main.ts")]),
      "start",
      "--config",
      configPath,
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        STELLAR_SECRET: sandbox.wallet.secret(),
        ...options.env,
      },
    },
  );
  let text = "";
  child.stdout?.on("data", (c: Buffer) => (text += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (text += c.toString()));
  const [url, adminUrl] = await new Promise<[string, string]>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`proxy did not start:\n${text}`)),
      options.startTimeoutMs ?? 30_000,
    );
    const onData = () => {
      const m = /"proxy":"(http:\/\/[^"]+)","admin":"(http:\/\/[^"]+)"/.exec(text);
      if (m?.[1] && m[2]) {
        clearTimeout(timer);
        resolve([m[1], m[2]]);
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`proxy exited with ${code}:\n${text}`));
    });
  });
  return {
    child,
    url,
    adminUrl,
    dataDir,
    configPath,
    output: () => text,
    stop: async (signal: NodeJS.Signals = "SIGTERM") => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill(signal);
      await exited;
    },
  };
}
