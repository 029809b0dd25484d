import type { Keypair } from "@stellar/stellar-sdk";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox, SandboxOptions } from "../../src/sandbox/sandbox.js";
import { defaultSwitches } from "../../src/sandbox/switches.js";
import { installSdkHttpGuard, trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";
import { TestStokaClient } from "./stoka-client.js";

/** Starts a sandbox on 127.0.0.1 (port 0) and makes this process trust its CA for the RPC. */
export async function startTestSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const sandbox = await startSandbox({ ...options, emulator: { ...options.emulator } });
  installSdkHttpGuard({ ledgerCloseSeconds: 5, timeoutMs: 10_000 });
  trustExtraCertificates([sandbox.ca.certPem]);
  return sandbox;
}

/** Puts the emulator back to its documented defaults (tests flip switches). */
export function resetSwitches(sandbox: Sandbox, popWaitSeconds = 0): void {
  Object.assign(sandbox.emulator.switches, defaultSwitches(), { popWaitSeconds });
}

/** A client with a fresh, funded wallet talking straight to the emulator. */
export function directClient(sandbox: Sandbox, wallet: Keypair = sandbox.newWallet()): TestStokaClient {
  return new TestStokaClient(sandbox.emulator.httpUrl, wallet, sandbox.rpc.url);
}
