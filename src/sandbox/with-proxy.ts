import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ProxyConfig } from "../config/config.js";
import { resolveConfig } from "../config/load.js";
import { configFileSchema } from "../config/schema.js";
import type { ConfigFlags } from "../config/load.js";
import type { Logger } from "../observability/logger.js";
import { StokaProxy } from "../proxy/server.js";
import type { ProxyDeps } from "../proxy/server.js";
import { trustExtraCertificates } from "../stellar/sdk-http-guard.js";
import { startSandbox } from "./sandbox.js";
import type { Sandbox, SandboxOptions } from "./sandbox.js";

/**
 * `stoka-proxy sandbox`: the proxy in front of the emulator, with stoka's hostnames routed to
 * it, the sandbox wallet and a sandbox spending cap (docs/operations.md, The sandbox).
 */
export const SANDBOX_BUDGET = { name: "sandbox", per_request_max: "0.05 USDC", limits: { day: "1 USDC" } };

export interface SandboxWithProxy {
  sandbox: Sandbox;
  proxy: StokaProxy;
  config: ProxyConfig;
  close(): Promise<void>;
}

export async function startSandboxWithProxy(
  logger: Logger,
  flags: ConfigFlags = {},
  options: SandboxOptions & {
    /** Adjusts the config before the proxy starts; a returned promise (e.g. starting more servers) is awaited. */
    configure?: (c: ProxyConfig, sandbox: Sandbox) => unknown;
    deps?: Partial<ProxyDeps>;
  } = {},
): Promise<SandboxWithProxy> {
  const sandbox = await startSandbox(options);
  const emulator = sandbox.emulator.httpUrl;
  const config = resolveConfig(
    configFileSchema.parse({
      listen: "127.0.0.1:8402",
      admin_listen: "127.0.0.1:9402",
      stoka_env: "test",
      paid_hosts: [
        { host: "test.api.stoka.space", upstream: emulator },
        { host: "api.stoka.space", upstream: emulator },
      ],
      gateway: { upstream: emulator },
      wallet: { rpc_url: sandbox.rpc.url, ledger_close_seconds: 5, signing_timeout_ms: 10_000 },
      budgets: [SANDBOX_BUDGET],
    }),
    "(sandbox)",
    { STELLAR_SECRET: sandbox.wallet.secret() },
    flags,
  );
  // The sandbox's own CA is trusted for the fake RPC and the emulator's HTTPS, in this process only.
  config.wallet.rpcCaPems = [sandbox.ca.certPem];
  config.upstream.caPems = [sandbox.ca.certPem];
  // A fresh wallet per run, so a fresh ledger too, unless a data directory was asked for.
  if (!process.env.STOKA_PROXY_DATA_DIR) config.dataDir = mkdtempSync(join(tmpdir(), "stoka-sandbox-"));
  trustExtraCertificates([sandbox.ca.certPem]);
  // The sandbox CA also signs the intercepted paid hosts: one certificate for the user to trust.
  const caDir = mkdtempSync(join(tmpdir(), "stoka-sandbox-ca-"));
  config.tls.caCertFile = join(caDir, "sandbox-ca.pem");
  config.tls.caKeyFile = join(caDir, "sandbox-ca.key");
  writeFileSync(config.tls.caCertFile, sandbox.ca.certPem);
  writeFileSync(config.tls.caKeyFile, sandbox.ca.keyPem, { mode: 0o600 });
  let proxy: StokaProxy;
  try {
    await options.configure?.(config, sandbox);
    proxy = new StokaProxy(config, { logger, ...options.deps });
    await proxy.listen();
  } catch (err) {
    await sandbox.close();
    throw err;
  }
  return {
    sandbox,
    proxy,
    config,
    close: async () => {
      await proxy.close();
      await sandbox.close();
    },
  };
}
