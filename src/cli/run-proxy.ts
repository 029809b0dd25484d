import { LOG_LEVELS, loadConfig } from "../config/load.js";
import { StokaProxyError } from "../errors.js";
import { OPEN_WARNING, isOpen } from "./check-config.js";
import type { ConfigFlags } from "../config/load.js";
import type { ListenAddress, ProxyConfig } from "../config/config.js";
import { AdminServer } from "../observability/admin.js";
import { createLogger } from "../observability/logger.js";
import type { Logger } from "../observability/logger.js";
import { StokaProxy } from "../proxy/server.js";
import { SignerServer } from "../proxy/signer-server.js";
import { startSandboxWithProxy } from "../sandbox/with-proxy.js";
import type { SandboxWithProxy } from "../sandbox/with-proxy.js";
import { warmUpPaymentCode } from "../wallet/warm-up.js";
import { warmUpUpstreamClient } from "../http/warm-up.js";
import type { ProxyContext } from "../proxy/context.js";
import { NETWORKS } from "../stellar/networks.js";
import type { StellarNetwork } from "../stellar/networks.js";

/**
 * `stoka-proxy start` and `sandbox` as long-running processes: the listeners, and what the
 * process does on signals (docs/operations.md, Stopping and reloading).
 *
 *   SIGTERM / SIGINT ─▶ drain (shutdown.drain_seconds) ─▶ stores closed ─▶ exit 0
 *        └─ the same signal again during the drain ─▶ what is open is cut at once ─▶ exit 0
 *   SIGHUP ─▶ the config file read again; live fields applied, the rest "needs restart"
 */
/** Said at every start of an open proxy. */
function warnIfOpen(logger: Logger, config: ProxyConfig, url: string): void {
  if (isOpen(config)) logger.warn({ listen: url, allow_anonymous: true }, OPEN_WARNING);
}

/**
 * The first SIGTERM or SIGINT starts `stop`, handing it a promise that settles on the second:
 * the drain then stops waiting. The process exits 0 once `stop` is done (1 if it failed).
 */
function stopOnSignals(logger: Logger, stop: (cutNow: Promise<void>) => Promise<void>): void {
  let stopping = false;
  let cut: () => void = () => undefined;
  const cutNow = new Promise<void>((resolve) => (cut = resolve));
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (stopping) {
        logger.warn({ signal: sig }, "second stop signal: cutting what is still open");
        cut();
        return;
      }
      stopping = true;
      stop(cutNow).then(
        () => process.exit(0),
        (e: unknown) => {
          logger.error({ err: (e as Error).message }, "shutdown failed");
          process.exit(1);
        },
      );
    });
  }
}

function formatListen(a: ListenAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * The configuration as a reload reads it: the same file, environment and flags as at start.
 * What is derived from the listener (egress deny_private: auto) is derived from the listener
 * in use, not from a new `listen` that only a restart would apply.
 */
export function reloadLoader(flags: ConfigFlags, inUse: () => ListenAddress): () => ProxyConfig {
  return () => {
    const next = loadConfig(process.env, flags);
    const listen = inUse();
    if (next.listen.host === listen.host && next.listen.port === listen.port) return next;
    const pinned = loadConfig(process.env, { ...flags, listen: formatListen(listen) });
    return { ...pinned, listen: next.listen };
  };
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

/** `stoka-proxy start`; returns once listening (the process then lives on its listeners). */
export async function runProxy(flags: ConfigFlags): Promise<void> {
  const config = loadConfig(process.env, flags);
  const logger = createLogger(config.logLevel);
  const proxy = new StokaProxy(config, { logger });
  const load = reloadLoader(flags, () => proxy.live.current.listen);
  const admin = new AdminServer(
    config.adminListen,
    proxy.registry,
    () => proxy.readiness(),
    config.metricsToken,
    proxy.operator.adminRoutes(),
    {
      adminToken: config.adminToken,
      reload: () => proxy.reload(load, "admin"),
      controls: proxy.paymentControls(),
    },
  );
  toggleStopOnSignal(proxy);
  await warmUp(logger, config.network, proxy.ctx);
  await listening("the proxy", "--listen", hostPort(config.listen), () => proxy.listen());
  await listening("the admin listener", "--admin-listen", hostPort(config.adminListen), () => admin.listen());
  // The signer role for keyless sidecars (docs/security.md, Keyless sidecars).
  const signer = config.signer ? new SignerServer(config.signer, proxy.ctx, proxy.registry) : undefined;
  if (signer && config.signer)
    await listening("the signer listener", "signer.listen", hostPort(config.signer.listen), () =>
      signer.listen(),
    );
  // Before the line that says it listens: whoever waits for that line may signal at once.
  // SIGHUP's default action ends the process: here it reloads instead.
  process.on("SIGHUP", () => {
    proxy.reload(load, "SIGHUP");
  });
  stopOnSignals(logger, async (cutNow) => {
    // /readyz says 503 at once; /metrics and /healthz keep answering until the drain is over.
    admin.beginShutdown();
    await signer?.close();
    await proxy.shutdown(proxy.live.current.shutdown.drainMs, cutNow);
    await admin.close();
  });
  logger.info(
    {
      proxy: proxy.url,
      admin: admin.url,
      ...(signer ? { signer: signer.url } : {}),
      network: config.network,
      data_dir: config.dataDir,
    },
    "stoka-proxy listening",
  );
  warnIfOpen(logger, config, proxy.url);
  if (!proxy.ctx.signer)
    logger.warn("no wallet configured (STELLAR_SECRET or X_PAYMENT_CMD): 402s are passed back unpaid");
  // A keyless sidecar's budgets are the signer's; local ones are optional extra caps.
  if (config.budgets.length === 0 && !config.wallet.remoteSigner)
    logger.warn("no budgets configured: nothing will be paid");
}

/** `stoka-proxy sandbox`; `banner` is printed once everything listens. */
export async function runSandbox(
  flags: ConfigFlags,
  banner: (world: SandboxWithProxy, adminUrl: string) => string,
): Promise<void> {
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
  const admin = new AdminServer(
    world.config.adminListen,
    world.proxy.registry,
    () => world.proxy.readiness(),
    world.config.metricsToken,
    world.proxy.operator.adminRoutes(),
    { controls: world.proxy.paymentControls() },
  );
  toggleStopOnSignal(world.proxy);
  await listening("the admin listener", "--admin-listen", hostPort(world.config.adminListen), () =>
    admin.listen(),
  );
  process.on("SIGHUP", () => logger.info("the sandbox has no configuration file to reload; SIGHUP ignored"));
  stopOnSignals(logger, async (cutNow) => {
    admin.beginShutdown();
    await world.proxy.shutdown(world.config.shutdown.drainMs, cutNow);
    await world.close();
    await admin.close();
  });
  warnIfOpen(logger, world.config, world.proxy.url);
  // sandbox.yaml names where this run listens (`stoka-proxy ca --config` prints it to apps).
  world.noteAddresses(new URL(world.proxy.url).host, new URL(admin.url).host);
  process.stdout.write(banner(world, admin.url));
}

/** SIGUSR2 flips the kill switch (docs/operations.md, Kill switch and dry run). */
function toggleStopOnSignal(proxy: StokaProxy): void {
  process.on("SIGUSR2", () => {
    const r = proxy.ctx.resilience;
    r.noteFlips(r.paymentSwitch.toggleStopped({ by: "signal:SIGUSR2", reason: "", atMs: Date.now() }));
  });
}

/**
 * One-time start-up costs paid before the proxy listens rather than by the first request: the
 * payment code's (src/wallet/warm-up.ts: offline, a throwaway key; ~50 ms here) when there is a
 * signer, and the upstream client's (src/http/warm-up.ts: one GET on loopback; ~14 ms). A
 * failure only means the first request pays it.
 */
async function warmUp(logger: Logger, network: StellarNetwork, ctx: ProxyContext): Promise<void> {
  try {
    const ms = await warmUpUpstreamClient(ctx.upstream);
    logger.debug({ duration_ms: Math.round(ms) }, "upstream client warmed up");
  } catch (e) {
    logger.debug({ err: (e as Error).message }, "upstream client warm-up failed");
  }
  if (!ctx.signer) return;
  try {
    const ms = await warmUpPaymentCode(NETWORKS[network].passphrase);
    logger.debug({ duration_ms: Math.round(ms) }, "payment code warmed up");
  } catch (e) {
    logger.debug({ err: (e as Error).message }, "payment code warm-up failed");
  }
}
