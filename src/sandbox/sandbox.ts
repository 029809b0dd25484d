import { Keypair } from "@stellar/stellar-sdk";
import { NETWORKS } from "../stellar/networks.js";
import type { StellarNetwork } from "../stellar/networks.js";
import { createCertificateAuthority, issueLeafCertificate } from "../tls/certificates.js";
import type { CertificateAuthority } from "../tls/certificates.js";
import { SandboxChain } from "./chain.js";
import { StokaEmulator } from "./emulator.js";
import type { EmulatorOptions } from "./emulator.js";
import { FakeSorobanRpc } from "./fake-rpc.js";

/**
 * The whole local stoka world in one process (docs/operations.md, The sandbox): a CA, the emulator over HTTP and
 * HTTPS, a fake Soroban RPC over HTTPS, and a fresh funded wallet. Nothing leaves 127.0.0.1.
 */
export interface SandboxOptions {
  network?: StellarNetwork;
  /** Starting balance of the sandbox wallet, atomic USDC (default 100 USDC). */
  walletFunding?: bigint;
  emulatorPort?: number;
  emulatorHttpsPort?: number;
  rpcPort?: number;
  now?: () => number;
  emulator?: Partial<Omit<EmulatorOptions, "chain" | "payTo" | "tls">>;
}

export interface Sandbox {
  chain: SandboxChain;
  emulator: StokaEmulator;
  rpc: FakeSorobanRpc;
  /** Trust anchor for the emulator's and the RPC's HTTPS certificates. */
  ca: CertificateAuthority;
  /** The sandbox wallet. Its secret stays in memory and is never printed. */
  wallet: Keypair;
  payTo: string;
  /** A new funded wallet, e.g. one per test. */
  newWallet(funding?: bigint): Keypair;
  close(): Promise<void>;
}

/** Names the sandbox certificate covers, so real stoka hostnames can be routed to it. */
export const SANDBOX_HOSTS = ["localhost", "127.0.0.1", "::1", "test.api.stoka.space", "api.stoka.space"];

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const info = NETWORKS[options.network ?? "stellar:testnet"];
  const chain = new SandboxChain(info, options.now);
  const ca = await createCertificateAuthority("stoka-proxy sandbox CA");
  const leaf = await issueLeafCertificate(ca, SANDBOX_HOSTS);
  const payTo = Keypair.random().publicKey();
  const emulator = new StokaEmulator({ ...options.emulator, chain, payTo, tls: leaf, now: options.now });
  const rpc = new FakeSorobanRpc(chain, leaf, options.now);
  await emulator.listen(options.emulatorPort ?? 0, options.emulatorHttpsPort ?? 0);
  await rpc.listen(options.rpcPort ?? 0);
  const newWallet = (funding = 100n * 10_000_000n) => {
    const kp = Keypair.random();
    chain.fund(kp.publicKey(), funding);
    return kp;
  };
  const wallet = newWallet(options.walletFunding);
  return {
    chain,
    emulator,
    rpc,
    ca,
    wallet,
    payTo,
    newWallet,
    close: async () => {
      await Promise.all([emulator.close(), rpc.close()]);
    },
  };
}
