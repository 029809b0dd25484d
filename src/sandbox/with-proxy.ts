import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import type { ProxyConfig } from "../config/config.js";
import { resolveConfig } from "../config/load.js";
import { configFileSchema } from "../config/schema.js";
import type { ConfigFlags } from "../config/load.js";
import type { Logger } from "../observability/logger.js";
import { StokaProxy } from "../proxy/server.js";
import type { ProxyDeps } from "../proxy/server.js";
import { trustExtraCertificates } from "../stellar/sdk-http-guard.js";
import { startSandbox } from "./sandbox.js";
import { SANDBOX_PREFIX, markSandboxFolder, sweepStaleSandboxFolders } from "./stale-folders.js";
import type { Sandbox, SandboxOptions } from "./sandbox.js";

/**
 * `stoka-proxy sandbox`: the proxy in front of the emulator, with stoka's hostnames routed to
 * it, the sandbox wallet and a sandbox spending cap (docs/operations.md, The sandbox).
 */
export const SANDBOX_BUDGET = { name: "sandbox", per_request_max: "0.05 USDC", limits: { day: "1 USDC" } };

/**
 * The environment the sandbox's config reads: its own wallet, and of the caller's variables only
 * the admin and metrics tokens (so the kill switch, approvals and a scrape can be tried with
 * them, docs/operations.md) and the log level. Nothing else: a real wallet, signer, RPC, Redis or listener named
 * in the environment must never reach the sandbox.
 */
export function sandboxEnv(env: NodeJS.ProcessEnv, secret: string): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { STELLAR_SECRET: secret };
  for (const k of ["STOKA_PROXY_ADMIN_TOKEN", "STOKA_PROXY_METRICS_TOKEN", "STOKA_PROXY_LOG_LEVEL"] as const)
    if (env[k] !== undefined) out[k] = env[k];
  return out;
}

export interface SandboxWithProxy {
  sandbox: Sandbox;
  proxy: StokaProxy;
  config: ProxyConfig;
  /** A config file without the wallet's secret that `spend`, `ledger …` read this sandbox with. */
  readConfigPath: string;
  /** Records the addresses the proxy and admin listener really got (port 0 asked for any). */
  noteAddresses(listen: string, adminListen: string): void;
  /** Folders this sandbox made (CA key, config, and the ledger unless a data folder was given). */
  temporaryDirs: string[];
  close(): Promise<void>;
  /** Removes temporaryDirs (the CLI does it on exit; tests may keep reading after close). */
  removeTemporary(): void;
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
  // One folder for the run: the CA (key included), a config to read the sandbox with, and a
  // fresh ledger (a fresh wallet per run) unless a data folder was asked for.
  // Folders of sandboxes that were killed (SIGKILL) before they could remove their own.
  const stale = sweepStaleSandboxFolders(tmpdir());
  if (stale.length > 0)
    logger.info({ folders: stale.length }, "removed the folders of sandboxes that were killed");
  const root = mkdtempSync(join(tmpdir(), SANDBOX_PREFIX));
  markSandboxFolder(root);
  const keepData = flags.dataDir ?? process.env.STOKA_PROXY_DATA_DIR;
  const dataDir = keepData ?? join(root, "data");
  const caCertFile = join(root, "ca", "sandbox-ca.pem");
  const caKeyFile = join(root, "ca", "sandbox-ca.key");
  mkdirSync(join(root, "ca"), { mode: 0o700 });
  writeFileSync(caCertFile, sandbox.ca.certPem);
  writeFileSync(caKeyFile, sandbox.ca.keyPem, { mode: 0o600 });
  const file = {
    listen: "127.0.0.1:8402",
    admin_listen: "127.0.0.1:9402",
    stoka_env: "test" as const,
    paid_hosts: [
      { host: "test.api.stoka.space", upstream: emulator },
      { host: "api.stoka.space", upstream: emulator },
    ],
    gateway: { upstream: emulator },
    wallet: { rpc_url: sandbox.rpc.url, ledger_close_seconds: 5, signing_timeout_ms: 10_000 },
    budgets: [SANDBOX_BUDGET],
  };
  const config = resolveConfig(
    configFileSchema.parse(file),
    "(sandbox)",
    sandboxEnv(process.env, sandbox.wallet.secret()),
    flags,
  );
  // The sandbox's own CA is trusted for the fake RPC and the emulator's HTTPS, in this process only.
  config.wallet.rpcCaPems = [sandbox.ca.certPem];
  config.upstream.caPems = [sandbox.ca.certPem];
  config.dataDir = dataDir;
  trustExtraCertificates([sandbox.ca.certPem]);
  // The sandbox CA also signs the intercepted paid hosts: one certificate for the user to trust.
  config.tls.caCertFile = caCertFile;
  config.tls.caKeyFile = caKeyFile;
  // What `stoka-proxy spend/ledger --config` needs to see this sandbox: its budget and ledger.
  const readConfigPath = join(root, "sandbox.yaml");
  const writeReadConfig = (listen: string, adminListen: string) =>
    writeFileSync(
      readConfigPath,
      `# Written by \`stoka-proxy sandbox\` so spend and ledger read its budget and ledger; removed on exit.\n${stringify(
        {
          ...file,
          listen,
          admin_listen: adminListen,
          data_dir: dataDir,
          wallet: { ...file.wallet, rpc_ca_files: [caCertFile] },
          upstream: { ca_files: [caCertFile] },
          tls: { ca_cert_file: caCertFile, ca_key_file: caKeyFile },
        },
      )}`,
    );
  writeReadConfig(flags.listen ?? file.listen, flags.adminListen ?? file.admin_listen);
  const temporaryDirs = [root];
  const removeTemporary = () => {
    for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
  };
  let proxy: StokaProxy;
  try {
    await options.configure?.(config, sandbox);
    proxy = new StokaProxy(config, { logger, ...options.deps });
    await proxy.listen();
  } catch (err) {
    await sandbox.close();
    removeTemporary();
    throw err;
  }
  return {
    sandbox,
    proxy,
    config,
    readConfigPath,
    noteAddresses: writeReadConfig,
    temporaryDirs,
    removeTemporary,
    close: async () => {
      await proxy.close();
      await sandbox.close();
    },
  };
}
