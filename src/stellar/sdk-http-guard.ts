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
  defaults: { adapter: unknown; proxy: unknown; timeout: number; httpsAgent?: unknown };
  getAdapter(name: unknown): Adapter;
  get(url: string): Promise<{ data: unknown }>;
}

let installed: SdkHttpGuardOptions | null = null;

/** The axios the SDK calls the RPC and Horizon with (its own copy, resolved from the SDK). */
export function sdkAxios(): AxiosLike {
  const sdkRequire = createRequire(createRequire(import.meta.url).resolve("@stellar/stellar-sdk"));
  return sdkRequire("axios") as AxiosLike;
}

export function installSdkHttpGuard(options: SdkHttpGuardOptions): void {
  installed = options;
  const axios = sdkAxios();
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
 * The trust store of the SDK's HTTPS calls, parsed once, now, on an agent of the SDK's own
 * (axios.defaults.httpsAgent: the SDK's Horizon client is axios itself and its RPC clients are
 * created from it per payment). On Node's global agent, handed `ca` (the system roots and the
 * extras, 150-odd PEMs), they were parsed again for every new connection, about 12 ms on the
 * first payment's RPC call; and a secure context set there would override the `ca` or client
 * certificate of any other request made on the global agent.
 */
let sdkAgent: https.Agent | undefined;
function useTrustStore(): void {
  // No extras: Node's default store (it honours NODE_EXTRA_CA_CERTS), loaded now rather than
  // on the first payment.
  const secureContext =
    extraCas.length > 0
      ? tls.createSecureContext({ ca: [...tls.rootCertificates, ...extraCas] })
      : tls.createSecureContext();
  // The agent before (start-up only) is left to finish what it carries.
  sdkAgent = new https.Agent({ keepAlive: true, secureContext });
  sdkAxios().defaults.httpsAgent = sdkAgent;
}

/**
 * Adds CA certificates (PEM) that the SDK's HTTPS calls trust on top of the system store, e.g.
 * the sandbox's fake RPC; verification itself stays on.
 */
export function trustExtraCertificates(pems: string[]): void {
  extraCas = [...new Set([...extraCas, ...pems])];
  useTrustStore();
}
