#!/usr/bin/env node
import type { ConfigFlags } from "../config/load.js";
import { StokaProxyError } from "../errors.js";
import { scrubSecrets } from "../secrets/redact.js";
import type { SandboxWithProxy } from "../sandbox/with-proxy.js";
import { formatUsdc } from "../stellar/amount.js";
import { runCli } from "./program.js";
import { runProxy, runSandbox } from "./run-proxy.js";

/**
 * The process: runs the command line (program.ts), keeps `start` and `sandbox` alive until a
 * signal, and turns every error into a message on stderr (never a stack, unless
 * STOKA_PROXY_DEBUG=1) with an exit code (program.ts lists them).
 */

async function startCommand(flags: ConfigFlags): Promise<void> {
  // Signals, drain and reload live in run-proxy.ts (docs/operations.md, Stopping and reloading).
  await runProxy(flags);
}

async function sandboxCommand(flags: ConfigFlags): Promise<void> {
  await runSandbox(flags, sandboxBanner);
}

function sandboxBanner(world: SandboxWithProxy, adminUrl: string): string {
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
  curl -s ${sandbox.emulator.httpUrl}/_sandbox/state      # what the emulator charged

Read its spend and ledger (from another terminal in this folder, while it runs):
  npx stoka-proxy spend --config ${world.readConfigPath}
  npx stoka-proxy ledger verify --config ${world.readConfigPath}
  npx stoka-proxy ledger export --format csv --config ${world.readConfigPath}

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
