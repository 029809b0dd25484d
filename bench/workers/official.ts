import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Keypair } from "@stellar/stellar-sdk";
import { SandboxChain } from "../../src/sandbox/chain.js";
import { NETWORKS } from "../../src/stellar/networks.js";
import { startOfficialX402Server } from "../../test/support/official-x402-server.js";
import { serveIpc } from "./ipc.js";

/**
 * The official x402 v2 resource server (test/support/official-x402-server.ts: @x402/express +
 * @x402/stellar's facilitator over a fake Soroban RPC) in its own process, with a funded payer.
 * Answers with the settlements it really made and the RPC calls it got.
 *
 * The payer's seed goes to the parent over IPC only (it hands it to the official client worker
 * and to the proxy in their environment); it is never written to a file or printed.
 */
const dir = process.argv[2] ?? "/tmp";
const chain = new SandboxChain(NETWORKS["stellar:testnet"]);
const server = await startOfficialX402Server({ chain });
const payer = Keypair.random();
chain.fund(payer.publicKey(), 10_000n * 10_000_000n);
const caFile = join(dir, "official-ca.pem");
writeFileSync(caFile, server.ca.certPem);

serveIpc(
  {
    url: server.url,
    path: server.path,
    rpc: server.rpc.url,
    caFile,
    payTo: server.payTo,
    price: server.price.toString(),
    payer: payer.publicKey(),
    secret: payer.secret(),
  },
  (msg) => {
    if (msg.type === "stats")
      return Promise.resolve({
        settlements: server.settlements().length,
        rpcCalls: Object.fromEntries(server.rpc.calls),
        facilitatorCalls: Object.fromEntries(server.facilitatorCalls),
      });
    return Promise.reject(new Error(`unknown message ${String(msg.type)}`));
  },
  () => server.close(),
);
