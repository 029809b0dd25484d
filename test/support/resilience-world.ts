import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import type { ProxyConfig } from "../../src/config/config.js";
import type { LedgerRow } from "../../src/ledger/entry.js";
import { CommandPaymentSigner } from "../../src/wallet/command-payment-signer.js";
import { KeyPaymentSigner } from "../../src/wallet/key-payment-signer.js";
import type { PaymentSigner } from "../../src/wallet/payment-signer.js";
import type { PaymentOffer } from "../../src/x402/payment-payload.js";
import type { ProxyWorld } from "./proxy-fixture.js";

/**
 * Pieces the resilience tests share: a plain HTTP client through the proxy (faster than curl,
 * for matrices), a signer whose behaviour can be switched between the real key signer, the
 * same key behind an RPC that never answers, and a signing command that never returns, and
 * small readers of the ledger and the budget.
 */
export const BASE = "http://test.api.stoka.space";

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request through the proxy (absolute-form), its answer read whole. */
export function viaProxy(
  proxyUrl: string,
  method: string,
  url: string,
  headers: Record<string, string> = {},
  body?: Buffer,
  timeoutMs = 30_000,
): Promise<Answer> {
  const proxy = new URL(proxyUrl);
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: proxy.hostname,
        port: proxy.port,
        method,
        path: url,
        agent: false,
        headers: { host: target.host, ...headers, ...(body ? { "content-length": body.length } : {}) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("client timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

export const storeVia = (w: ProxyWorld, key: string, body = Buffer.from("r".repeat(42)), headers = {}) =>
  viaProxy(w.proxyUrl, "POST", `${BASE}/v1/store`, { "x-stoka-key": key, ...headers }, body);

/** A TCP server that accepts and never answers: an RPC (or anything) that hangs. */
export async function blackHole(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export type SignerMode = "key" | "rpc_hang" | "signer_hang";

/** The wallet's signer, or the same wallet's failure modes, switched per test. */
export class SwitchableSigner implements PaymentSigner {
  mode: SignerMode = "key";
  calls = 0;
  constructor(
    private readonly key: PaymentSigner,
    private readonly rpcHang: PaymentSigner,
    private readonly hang: PaymentSigner,
  ) {}
  get kind() {
    return this.key.kind;
  }
  get address() {
    return this.key.address;
  }
  sign(offer: PaymentOffer): Promise<string> {
    this.calls += 1;
    const s = this.mode === "key" ? this.key : this.mode === "rpc_hang" ? this.rpcHang : this.hang;
    return s.sign(offer);
  }
}

/** Builds the switchable signer for a world's wallet: the hanging RPC and command time out in `timeoutMs`. */
export function switchableSigner(
  w: ProxyWorld,
  config: ProxyConfig,
  hangingRpcUrl: string,
  timeoutMs: number,
): SwitchableSigner {
  const key = w.proxy.ctx.signer as PaymentSigner;
  const rpcHang = new KeyPaymentSigner({
    secret: w.sandbox.wallet.secret(),
    network: config.network,
    rpcUrl: hangingRpcUrl,
    timeoutMs,
  });
  const hang = new CommandPaymentSigner("sleep 30", timeoutMs, w.sandbox.wallet.publicKey());
  return new SwitchableSigner(key, rpcHang, hang);
}

/** Ledger rows written since `afterSeq`, grouped by payment. */
export function newPayments(w: ProxyWorld, afterSeq: number): Map<string, LedgerRow[]> {
  const out = new Map<string, LedgerRow[]>();
  for (const r of w.proxy.stores.ledger.latest()) {
    if (r.firstSeq <= afterSeq) continue;
    out.set(r.paymentId, [r]);
  }
  return out;
}

export function ledgerHead(w: ProxyWorld): number {
  return w.proxy.stores.ledger.head()?.seq ?? 0;
}

export function budgetUsed(w: ProxyWorld): Promise<bigint> {
  const b = w.config.budgets[0];
  const limit = b?.limits[0];
  if (!b || !limit) throw new Error("no budget");
  return w.proxy.stores.budgets.used(b, limit, Date.now());
}

/** Charges the emulator recorded since `from` (index into its list). */
export function chargesSince(w: ProxyWorld, from: number): number {
  return w.sandbox.emulator.state.charges.length - from;
}
