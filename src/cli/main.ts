#!/usr/bin/env node
import type { ConfigFlags } from "../config/load.js";
import { loadConfig, LOG_LEVELS } from "../config/load.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { AdminServer } from "../observability/admin.js";
import { createLogger } from "../observability/logger.js";
import type { Logger } from "../observability/logger.js";
import { scrubSecrets } from "../secrets/redact.js";
import { StokaProxy } from "../proxy/server.js";
import { startSandboxWithProxy } from "../sandbox/with-proxy.js";
import { formatUsdc } from "../stellar/amount.js";
import { isOpen, OPEN_WARNING } from "./check-config.js";
import { runCli } from "./program.js";

/**
 * The process: runs the command line (program.ts), keeps `start` and `sandbox` alive until a
 * signal, and turns every error into a message on stderr (never a stack, unless
 * STOKA_PROXY_DEBUG=1) with an exit code (program.ts lists them).
 */

/** Said at every start of an open proxy. */
function warnIfOpen(logger: Logger, config: ProxyConfig, url: string): void {
  if (isOpen(config)) logger.warn({ listen: url, allow_anonymous: true }, OPEN_WARNING);
}

function hostPort(a: { host: string; port: number }): string {
  return `${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

/** A listener that cannot bind says which address and what to do, not a stack. */
async function listening<T>(what: string, flag: string, at: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE")
      throw new StokaProxyError(
        "config_invalid",
        `cannot listen on ${at} (${what}): the address is already in use`,
        `another stoka-proxy (or another program) listens there: stop it, or choose another address with ${flag}`,
      );
    if (code === "EACCES" || code === "EADDRNOTAVAIL")
      throw new StokaProxyError(
        "config_invalid",
        `cannot listen on ${at} (${what}): ${code === "EACCES" ? "permission denied" : "no such local address"}`,
        `choose another address with ${flag}`,
      );
    throw e;
  }
}

function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (stopping) return;
      stopping = true;
      stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}

async function startCommand(flags: ConfigFlags): Promise<void> {
  const config = loadConfig(process.env, flags);
  const logger = createLogger(config.logLevel);
  const proxy = new StokaProxy(config, { logger });
  const admin = new AdminServer(
    config.adminListen,
    proxy.registry,
    () => proxy.readiness(),
    config.metricsToken,
  );
  await listening("the proxy", "--listen", hostPort(config.listen), () => proxy.listen());
  await listening("the admin listener", "--admin-listen", hostPort(config.adminListen), () => admin.listen());
  logger.info(
    { proxy: proxy.url, admin: admin.url, network: config.network, data_dir: config.dataDir },
    "stoka-proxy listening",
  );
  warnIfOpen(logger, config, proxy.url);
  if (!proxy.ctx.signer)
    logger.warn("no wallet configured (STELLAR_SECRET or X_PAYMENT_CMD): 402s are passed back unpaid");
  if (config.budgets.length === 0) logger.warn("no budgets configured: nothing will be paid");
  stopOnSignals(async () => {
    admin.beginShutdown();
    await proxy.close();
    await admin.close();
  });
}

async function sandboxCommand(flags: ConfigFlags): Promise<void> {
  const level = flags.logLevel ?? process.env.STOKA_PROXY_LOG_LEVEL ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new StokaProxyError(
      "config_invalid",
      `env: STOKA_PROXY_LOG_LEVEL: must be one of ${LOG_LEVELS.join(", ")}`,
      "fix the value and start again",
    );
  const logger = createLogger(level);
  const world = await listening("the sandbox proxy", "--listen", flags.listen ?? "127.0.0.1:8402", () =>
    startSandboxWithProxy(logger, flags),
  );
  // The temporary folder (ledger, CA key) goes however the process ends.
  process.once("exit", () => world.removeTemporary());
  const admin = new AdminServer(world.config.adminListen, world.proxy.registry, () =>
    world.proxy.readiness(),
  );
  await listening("the admin listener", "--admin-listen", hostPort(world.config.adminListen), () =>
    admin.listen(),
  );
  warnIfOpen(logger, world.config, world.proxy.url);
  process.stdout.write(sandboxBanner(world, admin.url));
  stopOnSignals(async () => {
    admin.beginShutdown();
    await world.close();
    await admin.close();
  });
}

function sandboxBanner(world: Awaited<ReturnType<typeof startSandboxWithProxy>>, adminUrl: string): string {
  const { sandbox, proxy } = world;
  const p = proxy.url;
  const budget = world.config.budgets[0];
  const cap = budget?.perRequestMax !== undefined ? formatUsdc(budget.perRequestMax) : "none";
  const day = budget?.limits[0] ? formatUsdc(budget.limits[0].amount) : "none";
  return `
stoka-proxy sandbox is running: proxy, stoka emulator, fake Soroban RPC and a test wallet, all on this machine.

  proxy     ${p}   (HTTP_PROXY for apps; origin-form requests go to the emulator, gateway mode)
  admin     ${adminUrl}/metrics  /healthz  /readyz
  CA        ${world.config.tls.caCertFile ?? ""}   (trust it for HTTPS through the proxy)
  emulator  ${sandbox.emulator.httpUrl}  and  ${sandbox.emulator.httpsUrl}   (test.api.stoka.space and api.stoka.space are routed here)
  fake RPC  ${sandbox.rpc.url}
  wallet    ${sandbox.wallet.publicKey()}   (100 USDC in the emulator; its secret never leaves this process)
  budget    sandbox: at most ${cap} per request, ${day} per UTC day
  data      ${world.config.dataDir}   (ledger and budgets${world.temporaryDirs.some((d) => world.config.dataDir.startsWith(d)) ? "; removed on exit" : ""})
  folder    ${world.temporaryDirs.join(" ")}   (CA key and the config below; removed on exit)

Try it (paid by the proxy; look for X-Stoka-Proxy-Paid and X-Stoka-Proxy-Tx):
  curl -i -x ${p} -H 'X-Stoka-Key: hello.txt' --data-binary 'hello, stoka' http://test.api.stoka.space/v1/store
  curl -i -x ${p} http://test.api.stoka.space/v1/retrieve/hello.txt
  curl -i -x ${p} --cacert ${world.config.tls.caCertFile ?? ""} https://test.api.stoka.space/v1/retrieve/hello.txt
  curl -i -H 'X-Stoka-Key: gw.txt' --data-binary 'via the gateway' ${p}/v1/store
  curl -s ${sandbox.emulator.httpUrl}/_sandbox/state      (what the emulator charged)

Read its spend and ledger (from another terminal, while it runs):
  stoka-proxy spend --config ${world.readConfigPath}
  stoka-proxy ledger verify --config ${world.readConfigPath}
  stoka-proxy ledger export --format csv --config ${world.readConfigPath}

Stop with Ctrl-C.
`;
}

// `stoka-proxy ledger export | head`: a reader that stops early ends the export quietly.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});
const err = (text: string) => void process.stderr.write(text);
runCli(
  process.argv.slice(2),
  { out: (text) => void process.stdout.write(text), err, stderr: process.stderr, env: process.env },
  { start: startCommand, sandbox: sandboxCommand },
).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    // Scrubbed once more: whatever reaches the terminal never shows a seed or a token.
    if (e instanceof StokaProxyError) {
      err(scrubSecrets(`stoka-proxy: ${e.message}\n${e.hint ? `  → ${e.hint}\n` : ""}`));
      process.exit(e.code === "config_invalid" ? 78 : e.code === "bad_request" ? 2 : 1);
    }
    const debug = process.env.STOKA_PROXY_DEBUG === "1";
    const text = debug ? ((e as Error).stack ?? String(e)) : ((e as Error).message ?? String(e));
    err(scrubSecrets(`stoka-proxy: ${text}\n`));
    if (!debug) err("  → this is unexpected; STOKA_PROXY_DEBUG=1 shows where it happened\n");
    process.exit(1);
  },
);
