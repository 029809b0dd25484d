#!/usr/bin/env node
import { parseArgs } from "node:util";
import { loadConfig } from "../config/load.js";
import { isLoopbackHost } from "../config/open-listener.js";
import type { ConfigFlags } from "../config/load.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { AdminServer } from "../observability/admin.js";
import { createLogger } from "../observability/logger.js";
import type { Logger } from "../observability/logger.js";
import { scrubSecrets } from "../secrets/redact.js";
import { StokaProxy } from "../proxy/server.js";
import { startSandboxWithProxy } from "../sandbox/with-proxy.js";
import { formatUsdc } from "../stellar/amount.js";
import { loadOrCreateCa, trustInstructions } from "../tls/ca-store.js";
import { budgetsReset, budgetsRestore, budgetsStatus } from "./budget-commands.js";
import { eventsCommand } from "./events-command.js";
import { ledgerExport, ledgerVerify, reconcileCommand, spend } from "./ledger-commands.js";

/**
 * stoka-proxy [start] | sandbox | check-config   (flags: --config, --listen, --admin-listen,
 * --log-level, --rpc-url, --upstream)
 */
const USAGE = `usage: stoka-proxy [command] [flags]

commands:
  start          run the proxy (the default)
  sandbox        run the proxy in front of a local stoka emulator with a test wallet
  check-config   validate the configuration and exit
  ca             print the interception CA certificate and how to trust it
  ledger verify  check the payment ledger's hash chain (exit 3 if tampered)
  ledger export  --format ndjson|csv [--since ISO-DATE]
  spend          spend per budget and per route/client for the current periods [--json]
  reconcile      compare the ledger with stoka's /v1/me/usage [--days N] [--resolve] [--json]
  budgets status   the Redis budget store's epoch: ok, lost (and why), or none yet [--json]
  budgets restore  rebuild lost Redis budget counters from the ledgers and write a new epoch
                   [--ledger FILE]... (every replica's stoka-proxy.db; default: this data_dir's)
  budgets reset    start every Redis budget from zero with a new epoch (--yes required)
  events         the stored security events [--since ISO-DATE] [--code CODE] [--limit N] [--json]

flags:
  --config FILE          YAML or JSON config (or STOKA_PROXY_CONFIG)
  --listen HOST:PORT     proxy listener (default 127.0.0.1:8402)
  --admin-listen H:P     admin listener for /metrics, /healthz, /readyz (default 127.0.0.1:9402)
  --log-level LEVEL      fatal|error|warn|info|debug|trace|silent
  --rpc-url URL          Soroban RPC (or SOROBAN_RPC_URL)
  --upstream URL         gateway upstream (default: STOKA_BASE_URL / STOKA_ENV)
  --allow-anonymous      listen beyond loopback without client tokens (allow_anonymous: true)
`;

const OPEN_WARNING =
  "allow_anonymous: no client tokens and a listener beyond loopback: the proxy pays for anyone who can reach it";

/** Open to anyone: beyond loopback with no client tokens (only possible with allow_anonymous). */
function isOpen(config: ProxyConfig): boolean {
  return !isLoopbackHost(config.listen.host) && config.clients.length === 0;
}

/** Said at every start of an open proxy. */
function warnIfOpen(logger: Logger, config: ProxyConfig, url: string): void {
  if (isOpen(config)) logger.warn({ listen: url, allow_anonymous: true }, OPEN_WARNING);
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

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: "string" },
      listen: { type: "string" },
      "admin-listen": { type: "string" },
      "log-level": { type: "string" },
      "rpc-url": { type: "string" },
      upstream: { type: "string" },
      "allow-anonymous": { type: "boolean" },
      format: { type: "string" },
      since: { type: "string" },
      days: { type: "string" },
      resolve: { type: "boolean" },
      ledger: { type: "string", multiple: true },
      yes: { type: "boolean" },
      json: { type: "boolean" },
      code: { type: "string" },
      limit: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const command = positionals[0] ?? "start";
  if (values.help || command === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const flags: ConfigFlags = {};
  if (values.config) flags.config = values.config;
  if (values.listen) flags.listen = values.listen;
  if (values["admin-listen"]) flags.adminListen = values["admin-listen"];
  if (values["log-level"]) flags.logLevel = values["log-level"];
  if (values["rpc-url"]) flags.rpcUrl = values["rpc-url"];
  if (values.upstream) flags.upstream = values.upstream;
  if (values["allow-anonymous"]) flags.allowAnonymous = true;

  const out = (text: string) => process.stdout.write(text);
  switch (command) {
    case "ledger": {
      const config = loadConfig(process.env, flags);
      if (positionals[1] === "verify") return ledgerVerify(config, out);
      if (positionals[1] === "export")
        return ledgerExport(config, values.format ?? "ndjson", values.since, out);
      process.stderr.write(
        "usage: stoka-proxy ledger verify | ledger export --format ndjson|csv [--since DATE]\n",
      );
      return 2;
    }
    case "budgets": {
      const config = loadConfig(process.env, flags);
      if (positionals[1] === "status") return budgetsStatus(config, values.json === true, out);
      if (positionals[1] === "restore")
        return budgetsRestore(config, values.ledger ?? [], values.json === true, out);
      if (positionals[1] === "reset") return budgetsReset(config, values.yes === true, out);
      process.stderr.write(
        "usage: stoka-proxy budgets status | budgets restore [--ledger FILE]... | budgets reset --yes\n",
      );
      return 2;
    }
    case "events":
      return eventsCommand(
        loadConfig(process.env, flags),
        { since: values.since, code: values.code, limit: values.limit, json: values.json === true },
        out,
        (text) => process.stderr.write(text),
      );
    case "spend":
      return spend(loadConfig(process.env, flags), values.json === true, out);
    case "reconcile": {
      const config = loadConfig(process.env, flags);
      const days = Number(values.days ?? config.reconcile.days);
      return reconcileCommand(
        config,
        createLogger(config.logLevel, process.stderr),
        days,
        values.resolve === true,
        values.json === true,
        out,
      );
    }
    case "ca": {
      const config = loadConfig(process.env, flags);
      const { ca, certPath } = await loadOrCreateCa(config.dataDir, {
        ...(config.tls.caCertFile ? { certFile: config.tls.caCertFile } : {}),
        ...(config.tls.caKeyFile ? { keyFile: config.tls.caKeyFile } : {}),
      });
      out(trustInstructions(certPath, ca.certPem));
      return 0;
    }
    case "check-config": {
      const config = loadConfig(process.env, flags);
      if (isOpen(config)) process.stderr.write(`warning: ${OPEN_WARNING}\n`);
      process.stdout.write(
        `configuration is valid: ${config.network}, ${config.paidHosts.length} paid host(s), ${config.budgets.length} budget(s), ` +
          `signer: ${config.wallet.secret ? "local key" : config.wallet.paymentCommand ? "command" : "none (nothing will be paid)"}\n`,
      );
      return 0;
    }
    case "start": {
      const config = loadConfig(process.env, flags);
      const logger = createLogger(config.logLevel);
      const proxy = new StokaProxy(config, { logger });
      const admin = new AdminServer(
        config.adminListen,
        proxy.registry,
        () => proxy.readiness(),
        config.metricsToken,
        proxy.operator.adminRoutes(),
      );
      await proxy.listen();
      await admin.listen();
      logger.info({ proxy: proxy.url, admin: admin.url, network: config.network }, "stoka-proxy listening");
      warnIfOpen(logger, config, proxy.url);
      if (!proxy.ctx.signer)
        logger.warn("no wallet configured (STELLAR_SECRET or X_PAYMENT_CMD): 402s are passed back unpaid");
      if (config.budgets.length === 0) logger.warn("no budgets configured: nothing will be paid");
      stopOnSignals(async () => {
        admin.beginShutdown();
        await proxy.close();
        await admin.close();
      });
      return -1;
    }
    case "sandbox": {
      const logger = createLogger(flags.logLevel ?? process.env.STOKA_PROXY_LOG_LEVEL ?? "info");
      const world = await startSandboxWithProxy(logger, flags);
      const admin = new AdminServer(
        world.config.adminListen,
        world.proxy.registry,
        () => world.proxy.readiness(),
        world.config.metricsToken,
        world.proxy.operator.adminRoutes(),
      );
      await admin.listen();
      warnIfOpen(logger, world.config, world.proxy.url);
      process.stdout.write(sandboxBanner(world, admin.url));
      stopOnSignals(async () => {
        admin.beginShutdown();
        await world.close();
        await admin.close();
      });
      return -1;
    }
    default:
      process.stderr.write(`unknown command ${command}\n\n${USAGE}`);
      return 2;
  }
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
  admin     ${adminUrl}/  (status page)  /metrics  /healthz  /readyz
  CA        ${world.config.tls.caCertFile ?? ""}   (trust it for HTTPS through the proxy)
  emulator  ${sandbox.emulator.httpUrl}  and  ${sandbox.emulator.httpsUrl}   (test.api.stoka.space and api.stoka.space are routed here)
  fake RPC  ${sandbox.rpc.url}
  wallet    ${sandbox.wallet.publicKey()}   (100 USDC in the emulator; its secret never leaves this process)
  budget    sandbox: at most ${cap} per request, ${day} per UTC day

Try it (paid by the proxy; look for X-Stoka-Proxy-Paid and X-Stoka-Proxy-Tx):
  curl -i -x ${p} -H 'X-Stoka-Key: hello.txt' --data-binary 'hello, stoka' http://test.api.stoka.space/v1/store
  curl -i -x ${p} http://test.api.stoka.space/v1/retrieve/hello.txt
  curl -i -x ${p} --cacert ${world.config.tls.caCertFile ?? ""} https://test.api.stoka.space/v1/retrieve/hello.txt
  curl -i -H 'X-Stoka-Key: gw.txt' --data-binary 'via the gateway' ${p}/v1/store
  curl -s ${sandbox.emulator.httpUrl}/_sandbox/state      (what the emulator charged)

Stop with Ctrl-C.
`;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    // Scrubbed once more: whatever reaches the terminal never shows a seed or a token.
    if (err instanceof StokaProxyError) {
      process.stderr.write(scrubSecrets(`stoka-proxy: ${err.message}\n  → ${err.hint}\n`));
      process.exit(err.code === "config_invalid" ? 78 : 1);
    }
    process.stderr.write(scrubSecrets(`stoka-proxy: ${(err as Error).stack ?? String(err)}\n`));
    process.exit(1);
  },
);
