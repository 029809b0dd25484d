import type { ProxyConfig } from "../config/config.js";
import { loadConfig } from "../config/load.js";
import type { ConfigFlags } from "../config/load.js";
import { isLoopbackHost } from "../config/open-listener.js";
import { paidHostLabel } from "../config/paid-hosts.js";
import { StokaProxyError } from "../errors.js";
import { insecureParserRequested } from "../proxy/client-error.js";
import { jsonLine } from "./output.js";
import type { Out } from "./output.js";

/**
 * `stoka-proxy check-config [--json]`: the configuration is refused here for everything `start`
 * refuses it for (and for --insecure-http-parser), without creating anything. Exit 78.
 */
export const OPEN_WARNING =
  "allow_anonymous: no client tokens and a listener beyond loopback: the proxy pays for anyone who can reach it";

/** Open to anyone: beyond loopback with no client tokens (only possible with allow_anonymous). */
export function isOpen(config: ProxyConfig): boolean {
  return !isLoopbackHost(config.listen.host) && config.clients.length === 0;
}

function refuse(message: string, hint: string): never {
  throw new StokaProxyError("config_invalid", message, hint);
}

function signerOf(config: ProxyConfig): "local key" | "command" | "remote signer" | "none" {
  if (config.wallet.remoteSigner) return "remote signer";
  return config.wallet.secret ? "local key" : config.wallet.paymentCommand ? "command" : "none";
}

/**
 * Beyond the configuration itself, what start refuses before it listens. Files that exist
 * only where the proxy runs (data_dir, mounted CA files) are not looked at, so a pod's or a
 * container's config can be checked anywhere.
 */
function check(env: NodeJS.ProcessEnv): void {
  if (insecureParserRequested(process.execArgv, env.NODE_OPTIONS))
    refuse(
      "Node runs with --insecure-http-parser: the proxy's upstream calls would accept malformed responses",
      "remove --insecure-http-parser from the command line and NODE_OPTIONS",
    );
}

export async function checkConfigCommand(
  env: NodeJS.ProcessEnv,
  flags: ConfigFlags,
  json: boolean,
  out: Out,
  err: Out,
): Promise<number> {
  let config: ProxyConfig;
  try {
    config = loadConfig(env, flags);
    check(env);
  } catch (e) {
    if (!json || !(e instanceof StokaProxyError)) throw e;
    out(jsonLine({ valid: false, code: e.code, error: e.message, hint: e.hint }));
    return e.code === "config_invalid" ? 78 : 1;
  }
  const warnings = isOpen(config) ? [OPEN_WARNING] : [];
  const signer = signerOf(config);
  if (json) {
    out(
      jsonLine({
        valid: true,
        network: config.network,
        asset: config.asset,
        listen: `${config.listen.host}:${config.listen.port}`,
        admin_listen: `${config.adminListen.host}:${config.adminListen.port}`,
        paid_hosts: config.paidHosts.map(paidHostLabel),
        budgets: config.budgets.map((b) => b.name),
        signer,
        ...(config.signer
          ? { signer_role: `${config.signer.listen.host}:${config.signer.listen.port}` }
          : {}),
        data_dir: config.dataDir,
        budget_store: config.budgetStore.kind,
        log_level: config.logLevel,
        warnings,
      }),
    );
    return 0;
  }
  for (const w of warnings) err(`warning: ${w}\n`);
  out(
    `configuration is valid: ${config.network}, ${config.paidHosts.length} paid host(s), ${config.budgets.length} budget(s), ` +
      `signer: ${signer === "none" ? "none (nothing will be paid)" : signer}` +
      (config.signer ? `, signer role for ${config.signer.tokens.length} token(s)` : "") +
      "\n",
  );
  return 0;
}
