import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Agent, EnvHttpProxyAgent, ProxyAgent, request } from "undici";
import type { Dispatcher } from "undici";
import { requireTool } from "./tools.js";

/**
 * Real clients as child processes (curl, Python requests, Go net/http) and undici in-process,
 * all running the same scenario through the proxy.
 */
const run = promisify(execFile);
const ROOT = new URL("../..", import.meta.url).pathname;

export interface StepResult {
  step: string;
  status: number;
  paid: string | null;
  tx: string | null;
  body: Buffer;
}

export interface ScenarioStep {
  step: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

/** The common scenario every client runs: manifest, store, retrieve, update, queue push and pop. */
export function scenario(prefix: string, wallet: string): ScenarioStep[] {
  return [
    { step: "manifest", method: "GET", path: "/.well-known/stoka.json", headers: {} },
    {
      step: "store",
      method: "POST",
      path: "/v1/store",
      headers: { "X-Stoka-Key": `${prefix}-blob`, "Content-Type": "application/octet-stream" },
      body: Buffer.from("a".repeat(42)),
    },
    { step: "retrieve", method: "GET", path: `/v1/retrieve/${prefix}-blob`, headers: {} },
    {
      step: "update",
      method: "PUT",
      path: `/v1/object/${prefix}-blob`,
      headers: { "X-Stoka-TTL-Seconds": "86400" },
      body: Buffer.from("new"),
    },
    {
      step: "push",
      method: "POST",
      path: `/v1/queue/${wallet}/${prefix}-topic/push`,
      headers: {},
      body: Buffer.from("hello mailbox"),
    },
    { step: "pop", method: "POST", path: `/v1/queue/${prefix}-topic/pop`, headers: {} },
    { step: "delete", method: "DELETE", path: `/v1/object/${prefix}-blob`, headers: {} },
  ];
}

/** What each step must cost, in atomic units (docs/wire-protocol.md, Pricing). */
export const SCENARIO_PRICES: Record<string, string | null> = {
  manifest: null,
  store: "1400",
  retrieve: "1100",
  update: "1110",
  push: "1100",
  pop: "1100",
  delete: null,
};
export const SCENARIO_TOTAL = 5810n;

function fromJsonLine(stdout: string): StepResult[] {
  const rows = JSON.parse(stdout.trim().split("\n").pop() ?? "[]") as {
    step: string;
    status: number;
    paid: string | null;
    tx: string | null;
    body_b64: string;
  }[];
  return rows.map((r) => ({
    step: r.step,
    status: r.status,
    paid: r.paid,
    tx: r.tx,
    body: Buffer.from(r.body_b64, "base64"),
  }));
}

const proxyEnv = (proxy: string, extra: Record<string, string> = {}) => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? "/tmp",
  HTTP_PROXY: proxy,
  HTTPS_PROXY: proxy,
  http_proxy: proxy,
  https_proxy: proxy,
  NO_PROXY: "",
  ...extra,
});

export async function runPython(
  proxy: string,
  base: string,
  prefix: string,
  wallet: string,
  extraEnv: Record<string, string> = {},
) {
  const { stdout } = await run(
    "python3",
    [join(ROOT, "test/clients/stoka_requests.py"), base, prefix, wallet],
    {
      env: proxyEnv(proxy, extraEnv),
      timeout: 60_000,
    },
  );
  return fromJsonLine(stdout);
}

/** One request with Python `requests` (proxy from the environment; "" = none). */
export async function fetchOncePython(
  proxy: string,
  method: string,
  url: string,
  extraEnv: Record<string, string> = {},
): Promise<StepResult> {
  const { stdout } = await run(
    "python3",
    [join(ROOT, "test/clients/stoka_requests.py"), "--one", method, url],
    {
      env: proxyEnv(proxy, extraEnv),
      timeout: 60_000,
    },
  );
  return fromJsonLine(stdout)[0] as StepResult;
}

/** One request with Go net/http (proxy from the environment; "" = none). */
export async function fetchOnceGo(
  proxy: string,
  method: string,
  url: string,
  extraEnv: Record<string, string> = {},
): Promise<StepResult> {
  const { stdout } = await run(await goClient(), ["--one", method, url], {
    env: proxyEnv(proxy, extraEnv),
    timeout: 60_000,
  });
  return fromJsonLine(stdout)[0] as StepResult;
}

/** One request with curl, as a StepResult. */
export async function fetchOnceCurl(
  proxy: string | undefined,
  method: string,
  url: string,
  extra: string[] = [],
): Promise<StepResult & { headers: Record<string, string> }> {
  const r = await curl({ proxy, method, url, extra });
  return {
    step: "one",
    status: r.status,
    paid: r.headers["x-stoka-proxy-paid"] ?? null,
    tx: r.headers["x-stoka-proxy-tx"] ?? null,
    body: r.body,
    headers: r.headers,
  };
}

/** One request with undici through `dispatcher`, as a StepResult. */
export async function fetchOnceUndici(
  dispatcher: Dispatcher,
  method: string,
  url: string,
): Promise<StepResult & { headers: Record<string, string> }> {
  const r = await request(url, { method: method as "GET", dispatcher });
  const body = Buffer.from(await r.body.arrayBuffer());
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) if (typeof v === "string") headers[k] = v;
  return {
    step: "one",
    status: r.statusCode,
    paid: headers["x-stoka-proxy-paid"] ?? null,
    tx: headers["x-stoka-proxy-tx"] ?? null,
    body,
    headers,
  };
}

let goBinary: string | undefined;
/** Builds the Go client once per test process (needs `go`, from Debian's golang-go). */
export async function goClient(): Promise<string> {
  if (goBinary) return goBinary;
  requireTool("go");
  const dir = mkdtempSync(join(tmpdir(), "stoka-go-"));
  const out = join(dir, "stoka-go");
  await run("go", ["build", "-o", out, "."], {
    cwd: join(ROOT, "test/clients/go"),
    timeout: 180_000,
    env: { ...process.env, GOFLAGS: "-mod=mod", GOTOOLCHAIN: "local", GOPROXY: "off" },
  });
  goBinary = out;
  return out;
}

export async function runGo(
  proxy: string,
  base: string,
  prefix: string,
  wallet: string,
  extraEnv: Record<string, string> = {},
) {
  const { stdout } = await run(await goClient(), [base, prefix, wallet], {
    env: proxyEnv(proxy, extraEnv),
    timeout: 60_000,
  });
  return fromJsonLine(stdout);
}

/** A paid store of `bytes` bytes under `key`, through the proxy at `proxy`, by curl. */
export const curlStore = (proxy: string, key: string, bytes: number) =>
  curl({
    proxy,
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    headers: { "X-Stoka-Key": key },
    body: Buffer.alloc(bytes, "s"),
  });

/** One curl call; `proxy` may be undefined for gateway mode. */
export async function curl(args: {
  proxy?: string;
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Buffer;
  extra?: string[];
}): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const dir = mkdtempSync(join(tmpdir(), "stoka-curl-"));
  try {
    const bodyOut = join(dir, "body");
    const headOut = join(dir, "head");
    const argv = [
      "-s",
      "-S",
      "--max-time",
      "60",
      "-X",
      args.method,
      "-o",
      bodyOut,
      "-D",
      headOut,
      "-w",
      "%{http_code}",
    ];
    if (args.proxy) argv.push("-x", args.proxy);
    else argv.push("--noproxy", "*");
    for (const [k, v] of Object.entries(args.headers ?? {})) argv.push("-H", `${k}: ${v}`);
    if (args.body) {
      const bodyIn = join(dir, "in");
      writeFileSync(bodyIn, args.body);
      argv.push("--data-binary", `@${bodyIn}`);
    }
    argv.push(...(args.extra ?? []), args.url);
    const { stdout } = await run("curl", argv, {
      timeout: 70_000,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    const headers: Record<string, string> = {};
    // With a proxy CONNECT there are two header blocks; the last one is the answer.
    const blocks = readFileSync(headOut, "utf8")
      .trim()
      .split(/\r?\n\r?\n/);
    for (const line of (blocks.pop() ?? "").split(/\r?\n/).slice(1)) {
      const i = line.indexOf(":");
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    return { status: Number(stdout.trim()), headers, body: readFileSync(bodyOut) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runCurl(
  proxy: string | undefined,
  base: string,
  prefix: string,
  wallet: string,
  extra: string[] = [],
) {
  const out: StepResult[] = [];
  for (const s of scenario(prefix, wallet)) {
    const r = await curl({
      proxy,
      method: s.method,
      url: base + s.path,
      headers: s.headers,
      body: s.body,
      extra,
    });
    out.push({
      step: s.step,
      status: r.status,
      paid: r.headers["x-stoka-proxy-paid"] ?? null,
      tx: r.headers["x-stoka-proxy-tx"] ?? null,
      body: r.body,
    });
  }
  return out;
}

export async function runUndici(dispatcher: Dispatcher, base: string, prefix: string, wallet: string) {
  const out: StepResult[] = [];
  for (const s of scenario(prefix, wallet)) {
    const r = await request(base + s.path, {
      method: s.method as "GET",
      headers: s.headers,
      body: s.body,
      dispatcher,
    });
    const body = Buffer.from(await r.body.arrayBuffer());
    const h = (n: string) => {
      const v = r.headers[n];
      return typeof v === "string" ? v : null;
    };
    out.push({
      step: s.step,
      status: r.statusCode,
      paid: h("x-stoka-proxy-paid"),
      tx: h("x-stoka-proxy-tx"),
      body,
    });
  }
  return out;
}

export function undiciProxyAgent(proxy: string, ca?: string): Dispatcher {
  return new ProxyAgent({ uri: proxy, ...(ca ? { requestTls: { ca } } : {}) });
}

export function undiciEnvAgent(proxy: string, ca?: string): Dispatcher {
  return new EnvHttpProxyAgent({
    httpProxy: proxy,
    httpsProxy: proxy,
    noProxy: "",
    ...(ca ? { requestTls: { ca } } : {}),
  });
}

export { Agent };
