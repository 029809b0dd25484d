import { PassThrough } from "node:stream";
import type { ProxyConfig } from "../../src/config/config.js";
import type { Sandbox, SandboxOptions } from "../../src/sandbox/sandbox.js";
import { createLogger } from "../../src/observability/logger.js";
import { startSandboxWithProxy } from "../../src/sandbox/with-proxy.js";
import type { SandboxWithProxy } from "../../src/sandbox/with-proxy.js";
import type { ProxyDeps } from "../../src/proxy/server.js";
import { reconcilerDeps } from "../../src/payment/reconciler.js";
import type { ReconcileDeps } from "../../src/payment/reconciler.js";
import type { PaymentOffer } from "../../src/x402/payment-payload.js";
import type { PaymentSigner } from "../../src/wallet/payment-signer.js";

/**
 * The sandbox with the proxy in front, on port 0, logs captured in memory, and a count of
 * every payment the proxy signs (to prove "nothing signed" and "at most one").
 */
export interface ProxyWorld extends SandboxWithProxy {
  logs: () => string;
  signCalls: () => number;
  signer: () => CountingSigner | undefined;
  /** Total the emulator charged the sandbox wallet: the truth. */
  charged: () => bigint;
  proxyUrl: string;
}

export class CountingSigner implements PaymentSigner {
  calls = 0;
  /** Every payment header value produced, to check none leaks into logs. */
  readonly produced: string[] = [];
  constructor(private readonly inner: PaymentSigner) {}
  get kind() {
    return this.inner.kind;
  }
  get address() {
    return this.inner.address;
  }
  /** Passed on, so a refused payment still drops what the real signer prepared ahead. */
  forgetPrepared(offer: PaymentOffer): void {
    this.forgotten += 1;
    this.inner.forgetPrepared?.(offer);
  }
  forgotten = 0;
  async sign(offer: PaymentOffer): Promise<string> {
    this.calls += 1;
    const header = await this.inner.sign(offer);
    this.produced.push(header);
    return header;
  }
}

export async function startProxyWorld(
  configure?: (c: ProxyConfig, sandbox: Sandbox) => unknown,
  deps: Partial<ProxyDeps> = {},
  /** More emulator options (e.g. a `pricing` object the test changes later). */
  emulator: NonNullable<SandboxOptions["emulator"]> = {},
): Promise<ProxyWorld> {
  const sink = new PassThrough();
  let text = "";
  sink.on("data", (c: Buffer) => {
    text += c.toString("utf8");
  });
  const logger = createLogger("info", sink);
  let counting: CountingSigner | undefined;
  const world = await startSandboxWithProxy(
    logger,
    { listen: "127.0.0.1:0", adminListen: "127.0.0.1:0" },
    { configure, deps, emulator: { ...emulator, switches: { popWaitSeconds: 0, ...emulator.switches } } },
  );
  const signer = world.proxy.ctx.signer;
  if (signer) {
    counting = new CountingSigner(signer);
    world.proxy.ctx.signer = counting;
  }
  return {
    ...world,
    proxyUrl: world.proxy.url,
    logs: () => text,
    signCalls: () => counting?.calls ?? 0,
    signer: () => counting,
    charged: () => world.sandbox.emulator.chargedTotal(world.sandbox.wallet.publicKey()),
  };
}

/** Runs `fn` against a world with its own configuration, and closes it. */
export async function withProxyWorld(
  configure: (c: ProxyConfig, sandbox: Sandbox) => unknown,
  fn: (world: ProxyWorld) => Promise<void>,
  deps: Partial<ProxyDeps> = {},
): Promise<void> {
  const world = await startProxyWorld(configure, deps);
  try {
    await fn(world);
  } finally {
    await world.close();
  }
}

/** What the reconciler needs, taken from a running world. */
export function reconcileDeps(world: ProxyWorld): ReconcileDeps {
  return reconcilerDeps(world.config, world.proxy.ctx);
}
