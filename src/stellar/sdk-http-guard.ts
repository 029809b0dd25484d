import { createRequire } from "node:module";
import https from "node:https";
import tls from "node:tls";

/**
 * Makes the Stellar SDK's own HTTP calls safe for a proxy:
 * 1. `@x402/stellar` asks a hard-coded Horizon host for the ledger close time through axios
 *    with no timeout. We answer that query in-process with the configured close time, so the
 *    payment path never waits on Horizon.
 * 2. axios honours HTTP(S)_PROXY: a sidecar would route its own RPC calls through itself.
 * 3. Every other SDK call gets a timeout.
 * axios instances copy `axios.defaults` when they are created, and the SDK creates its RPC
 * and Horizon clients per payment, so setting the defaults once at start-up covers them.
 */
export interface SdkHttpGuardOptions {
  ledgerCloseSeconds: number;
  timeoutMs: number;
}

interface AxiosLikeConfig {
  url?: string;
  baseURL?: string;
}
type Adapter = (config: AxiosLikeConfig) => Promise<unknown>;
interface AxiosLike {
  defaults: { adapter: unknown; proxy: unknown; timeout: number };
  getAdapter(name: unknown): Adapter;
}

let installed: SdkHttpGuardOptions | null = null;

export function installSdkHttpGuard(options: SdkHttpGuardOptions): void {
  installed = options;
  const sdkRequire = createRequire(createRequire(import.meta.url).resolve("@stellar/stellar-sdk"));
  const axios = sdkRequire("axios") as AxiosLike;
  const fallback = axios.getAdapter(["http"]);
  useTrustStore();
  axios.defaults.proxy = false;
  axios.defaults.timeout = options.timeoutMs;
  axios.defaults.adapter = (async (config: AxiosLikeConfig) => {
    const url = `${config.baseURL ?? ""}${config.url ?? ""}`;
    if (/^https?:\/\/horizon(-testnet)?\.stellar\.org\/ledgers/.test(url)) {
      return syntheticLedgerPage(config, installed?.ledgerCloseSeconds ?? 5);
    }
    return fallback(config);
  }) satisfies Adapter;
}

/** Twenty ledger records `closeSeconds` apart: what the SDK averages into a close time. */
function syntheticLedgerPage(config: AxiosLikeConfig, closeSeconds: number): unknown {
  const now = Date.now();
  const records = Array.from({ length: 20 }, (_, i) => ({
    sequence: 20 - i,
    closed_at: new Date(now - i * closeSeconds * 1000).toISOString(),
  }));
  const link = { href: config.url ?? "" };
  return {
    data: { _links: { self: link, next: link, prev: link }, _embedded: { records } },
    status: 200,
    statusText: "OK",
    headers: {},
    config,
    request: {},
  };
}

let extraCas: string[] = [];

/**
 * The trust store of the SDK's HTTPS calls, parsed once, now. The SDK builds its RPC clients on
 * Node's global HTTPS agent; handed `ca` (the system roots and the extras, 150-odd PEMs) that
 * agent parsed them all again for every new connection, and even without extras Node parses its
 * roots on the first one: about 12 ms on the first payment's RPC call, inside the request.
 */
function useTrustStore(): void {
  const agent = https.globalAgent.options as { ca?: unknown; secureContext?: tls.SecureContext };
  delete agent.ca;
  // No extras: Node's default store (it honours NODE_EXTRA_CA_CERTS), loaded now rather than
  // on the first payment.
  agent.secureContext =
    extraCas.length > 0
      ? tls.createSecureContext({ ca: [...tls.rootCertificates, ...extraCas] })
      : tls.createSecureContext();
}

/**
 * Adds CA certificates (PEM) that the SDK's HTTPS calls trust on top of the system store, e.g.
 * the sandbox's fake RPC; verification itself stays on.
 */
export function trustExtraCertificates(pems: string[]): void {
  extraCas = [...new Set([...extraCas, ...pems])];
  useTrustStore();
}
