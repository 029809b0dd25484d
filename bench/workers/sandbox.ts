import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import { serveIpc } from "./ipc.js";

/**
 * The sandbox (stoka emulator + fake Soroban RPC + a funded wallet) as the paid upstream, in
 * its own process so the proxy's CPU per payment is the proxy's alone. Answers with what the
 * emulator really charged and the RPC calls it got, by method.
 *
 * The wallet's seed goes to the parent over IPC only (the parent hands it to the proxy child in
 * its environment, as an operator would); it is never written to a file or printed.
 */
const dir = process.argv[2] ?? "/tmp";
const sandbox = await startSandbox({ walletFunding: 10_000n * 10_000_000n });
const caFile = join(dir, "sandbox-ca.pem");
writeFileSync(caFile, sandbox.ca.certPem);

serveIpc(
  {
    emulator: sandbox.emulator.httpUrl,
    rpc: sandbox.rpc.url,
    caFile,
    payer: sandbox.wallet.publicKey(),
    secret: sandbox.wallet.secret(),
  },
  (msg) => {
    if (msg.type === "stats") {
      return Promise.resolve({
        charged: sandbox.emulator.chargedTotal().toString(),
        charges: sandbox.emulator.state.charges.length,
        rpcCalls: Object.fromEntries(sandbox.rpc.calls),
      });
    }
    return Promise.reject(new Error(`unknown message ${String(msg.type)}`));
  },
  () => sandbox.close(),
);
