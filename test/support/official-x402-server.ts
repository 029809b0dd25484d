import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { Keypair } from "@stellar/stellar-sdk";
import express from "express";
import { x402Facilitator } from "@x402/core/facilitator";
import { HTTPFacilitatorClient } from "@x402/core/server";
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { createEd25519Signer } from "@x402/stellar";
import { ExactStellarScheme as FacilitatorScheme } from "@x402/stellar/exact/facilitator";
import { ExactStellarScheme as ServerScheme } from "@x402/stellar/exact/server";
import { SandboxChain } from "../../src/sandbox/chain.js";
import { FakeSorobanRpc } from "../../src/sandbox/fake-rpc.js";
import type { SettledTransfer } from "../../src/sandbox/fake-rpc.js";
import { NETWORKS } from "../../src/stellar/networks.js";
import { installSdkHttpGuard, trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import type { CertificateAuthority } from "../../src/tls/certificates.js";

/**
 * A generic x402 v2 resource server built only from the official packages, the way a new user
 * would build one: `@x402/express`'s `paymentMiddleware` with `@x402/stellar`'s server scheme,
 * reaching a small HTTP facilitator (`/verify`, `/settle`, `/supported`) through `@x402/core`'s
 * `HTTPFacilitatorClient`; the facilitator runs `@x402/stellar`'s facilitator scheme with a
 * keypair made here, against a fake Soroban RPC of its own on the given chain.
 *
 *   app ─▶ proxy ─▶ express + paymentMiddleware ──HTTP──▶ facilitator ──JSON-RPC──▶ fake RPC ─▶ chain
 *                    (402 PAYMENT-REQUIRED, reads PAYMENT-SIGNATURE; compares `accepted` by deep equality)
 *
 * Everything listens on 127.0.0.1, port 0. Settlements are counted on this server's own RPC.
 * Only testnet: the official Stellar server scheme prices in testnet USDC by default.
 */
export interface OfficialX402ServerOptions {
  /** The chain to settle on; share the sandbox's so the proxy's wallet is funded. Default: a new one. */
  chain?: SandboxChain;
  /** Issues the RPC's and the HTTPS listener's certificates. Default: a new CA. */
  ca?: CertificateAuthority;
  /** The payee. Default: a fresh G-address. */
  payTo?: string;
  /** Price of the paid route, atomic USDC. Default 1234. */
  price?: bigint;
  /** The paid route (GET). Default `/weather`. */
  path?: string;
  maxTimeoutSeconds?: number;
  /** Also listen over HTTPS with a certificate from `ca`. */
  https?: boolean;
  /** Names the HTTPS certificate covers. */
  hostnames?: string[];
  /** Route `extensions` (sent in PAYMENT-REQUIRED; a client must echo them). */
  extensions?: Record<string, unknown>;
  /** Extra fields of the requirement's `extra` (unknown to the proxy; echoed verbatim). */
  extra?: Record<string, unknown>;
}

export interface OfficialX402Server {
  url: string;
  /** Empty unless started with `https: true`. */
  httpsUrl: string;
  facilitatorUrl: string;
  chain: SandboxChain;
  ca: CertificateAuthority;
  /** The facilitator's own RPC; `settlements` there are this server's. */
  rpc: FakeSorobanRpc;
  payTo: string;
  price: bigint;
  path: string;
  facilitatorAddress: string;
  /** Facilitator calls per endpoint (`verify`, `settle`, `supported`). */
  facilitatorCalls: Map<string, number>;
  /** Transfers settled for this server so far. */
  settlements(): SettledTransfer[];
  /** The body the paid route answers with. */
  readonly resourceBody: { weather: string; paid: true };
  close(): Promise<void>;
}

const NETWORK = "stellar:testnet" as const;

export async function startOfficialX402Server(
  options: OfficialX402ServerOptions = {},
): Promise<OfficialX402Server> {
  const info = NETWORKS[NETWORK];
  const chain = options.chain ?? new SandboxChain(info);
  const ca = options.ca ?? (await createCertificateAuthority("official x402 peer CA"));
  const payTo = options.payTo ?? Keypair.random().publicKey();
  const price = options.price ?? 1234n;
  const path = options.path ?? "/weather";
  const hostnames = options.hostnames ?? ["localhost", "127.0.0.1", "x402.test"];
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };

  try {
    // The SDK (facilitator side) talks HTTPS to the RPC and asks Horizon for the close time:
    // trust our CA and answer Horizon in-process, exactly as the proxy does.
    installSdkHttpGuard({ ledgerCloseSeconds: chain.clock.closeSeconds, timeoutMs: 10_000 });
    trustExtraCertificates([ca.certPem]);
    const leaf = await issueLeafCertificate(ca, hostnames);
    const rpc = new FakeSorobanRpc(chain, leaf);
    await rpc.listen();
    closers.push(() => rpc.close());

    const facilitatorKeys = Keypair.random();
    chain.openAccount(facilitatorKeys.publicKey());
    const facilitator = new x402Facilitator().register(
      NETWORK,
      new FacilitatorScheme([createEd25519Signer(facilitatorKeys.secret(), NETWORK)], {
        rpcConfig: { url: rpc.url },
      }),
    );
    const facilitatorCalls = new Map<string, number>();
    const facilitatorServer = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const route = `${req.method} ${req.url}`;
        const reply = (status: number, body: unknown) => {
          const text = JSON.stringify(body);
          res.writeHead(status, {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(text),
          });
          res.end(text);
        };
        const name = (req.url ?? "").replace(/^\//, "");
        facilitatorCalls.set(name, (facilitatorCalls.get(name) ?? 0) + 1);
        void (async () => {
          if (route === "GET /supported") return reply(200, facilitator.getSupported());
          if (route !== "POST /verify" && route !== "POST /settle") return reply(404, { error: "no route" });
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
            paymentPayload: PaymentPayload;
            paymentRequirements: PaymentRequirements;
          };
          if (route === "POST /verify")
            return reply(200, await facilitator.verify(body.paymentPayload, body.paymentRequirements));
          return reply(200, await facilitator.settle(body.paymentPayload, body.paymentRequirements));
        })().catch((e: unknown) => reply(500, { error: (e as Error).message }));
      });
    });
    const facilitatorUrl = `http://127.0.0.1:${await listen(facilitatorServer)}`;
    closers.push(() => shut(facilitatorServer));

    const resourceServer = new x402ResourceServer(
      new HTTPFacilitatorClient({ url: facilitatorUrl }),
    ).register(NETWORK, new ServerScheme());
    const resourceBody = { weather: "sunny", paid: true } as const;
    const app = express();
    app.use(
      paymentMiddleware(
        {
          [`GET ${path}`]: {
            accepts: {
              scheme: "exact",
              network: NETWORK,
              payTo,
              price: { amount: price.toString(), asset: info.usdcAsset },
              maxTimeoutSeconds: options.maxTimeoutSeconds ?? 120,
              ...(options.extra ? { extra: options.extra } : {}),
            },
            description: "today's weather",
            mimeType: "application/json",
            ...(options.extensions ? { extensions: options.extensions } : {}),
          },
        },
        resourceServer,
      ),
    );
    app.get(path, (_req, res) => {
      res.json(resourceBody);
    });
    const plain = http.createServer(app);
    const url = `http://127.0.0.1:${await listen(plain)}`;
    closers.push(() => shut(plain));
    let httpsUrl = "";
    if (options.https) {
      const secure = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, app);
      httpsUrl = `https://localhost:${await listen(secure)}`;
      closers.push(() => shut(secure));
    }
    return {
      url,
      httpsUrl,
      facilitatorUrl,
      chain,
      ca,
      rpc,
      payTo,
      price,
      path,
      facilitatorAddress: facilitatorKeys.publicKey(),
      facilitatorCalls,
      settlements: () => rpc.settlements.filter((s) => s.to === payTo),
      resourceBody,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function shut(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
