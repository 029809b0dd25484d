import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { readAll } from "../http/body.js";
import type { PemPair } from "../tls/certificates.js";
import { parseStellarAuthorization, verifyChallengeSignature } from "../stellar/wallet-auth.js";
import { decodeBase64Json, encodeReceiptHeader } from "../x402/payment-header.js";
import type { SandboxChain } from "./chain.js";
import { buildChallenge, issuedRequirement } from "./challenge-402.js";
import type { Quote } from "./challenge-402.js";
import { verifyPayment } from "./payment-verifier.js";
import { defaultPricing } from "./pricing.js";
import type { Pricing } from "./pricing.js";
import { matchRoute } from "./routes.js";
import type { EmulatorRequest, EmulatorResponse, RouteContext, RouteDef } from "./routes.js";
import { StokaState } from "./state.js";
import { defaultSwitches, isFaultKind, takeFault } from "./switches.js";
import type { EmulatorSwitches, Fault } from "./switches.js";

/**
 * An emulated stoka server (docs/wire-protocol.md), strict where stoka is documented and
 * switchable where it varies. Paid routes verify payments for real (payment-verifier.ts)
 * before anything is stored or charged.
 *
 *   client ──HTTP(S)──▶ emulator ─┬─ /_sandbox/*  control: switches, faults, charges, funding
 *                                 └─ ROUTES (routes.ts): public | signed (Authorization: Stellar)
 *                                                        | paid (402 → verify → settle → fulfil)
 */
export interface EmulatorOptions {
  chain: SandboxChain;
  /** The payee G-address of this stoka. */
  payTo: string;
  pricing?: Pricing;
  maxTimeoutSeconds?: number;
  /** Bodies above this are refused with 413. */
  maxBodyBytes?: number;
  now?: () => number;
  switches?: Partial<EmulatorSwitches>;
  /** When set, `listen` also serves HTTPS with this certificate. */
  tls?: PemPair;
  host?: string;
}

/** JSON merge fields on every body (docs/wire-protocol.md, stoka's routes). */
export const MERGE_FIELDS = { service: "stoka", audience: "agent", api_family: "stoka-x402-v1" } as const;

export class StokaEmulator {
  readonly state: StokaState;
  readonly switches: EmulatorSwitches;
  readonly chain: SandboxChain;
  readonly payTo: string;
  private readonly ctx: RouteContext;
  private readonly maxBodyBytes: number;
  private readonly servers: http.Server[] = [];
  private closing = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  httpUrl = "";
  httpsUrl = "";

  constructor(private readonly options: EmulatorOptions) {
    const now = options.now ?? Date.now;
    this.chain = options.chain;
    this.payTo = options.payTo;
    this.state = new StokaState(now);
    this.switches = { ...defaultSwitches(), ...options.switches };
    this.maxBodyBytes = options.maxBodyBytes ?? 100 * 1024 * 1024;
    this.ctx = {
      state: this.state,
      chain: this.chain,
      switches: this.switches,
      pricing: options.pricing ?? defaultPricing(),
      payTo: options.payTo,
      maxTimeoutSeconds: options.maxTimeoutSeconds ?? 120,
      now,
      sleep: (ms) => this.sleep(ms),
    };
  }

  /** Total charged so far, optionally for one payer: the truth tests assert against. */
  chargedTotal(payer?: string): bigint {
    return this.state.charges.filter((c) => !payer || c.payer === payer).reduce((s, c) => s + c.amount, 0n);
  }

  addFault(fault: Partial<Fault> & Pick<Fault, "kind">): void {
    this.switches.faults.push({ remaining: 1, ...fault });
  }

  async listen(port = 0, httpsPort = 0): Promise<{ httpUrl: string; httpsUrl: string }> {
    const host = this.options.host ?? "127.0.0.1";
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent)
          this.send(res, { status: 500, json: { error: `emulator error: ${(e as Error).message}` } });
        else res.destroy();
      });
    };
    const plain = http.createServer(handler);
    this.servers.push(plain);
    this.httpUrl = `http://${host}:${await listenOn(plain, port, host)}`;
    if (this.options.tls) {
      const secure = https.createServer(
        { cert: this.options.tls.certPem, key: this.options.tls.keyPem },
        handler,
      );
      this.servers.push(secure);
      this.httpsUrl = `https://${host}:${await listenOn(secure, httpsPort, host)}`;
    }
    return { httpUrl: this.httpUrl, httpsUrl: this.httpsUrl };
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.timers) clearTimeout(t);
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  }

  private sleep(ms: number): Promise<void> {
    if (this.closing) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readAll(req, this.maxBodyBytes);
    if (body === null) {
      this.send(res, { status: 413, json: { error: `body larger than ${this.maxBodyBytes} bytes` } });
      return;
    }
    const secure = (req.socket as { encrypted?: boolean }).encrypted === true;
    const url = new URL(req.url ?? "/", `${secure ? "https" : "http"}://${req.headers.host ?? "localhost"}`);
    if (url.pathname.startsWith("/_sandbox/")) {
      this.send(res, this.control(req.method ?? "GET", url.pathname, body));
      return;
    }
    const paymentHeader = this.paymentHeader(req);
    const request: EmulatorRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body,
      url: url.toString(),
      paying: paymentHeader !== undefined,
    };
    const found = matchRoute(request.method, request.path);
    if (!found)
      return this.send(res, { status: 404, json: { error: `no route ${request.method} ${request.path}` } });
    if ("allowed" in found) {
      return this.send(res, {
        status: 405,
        headers: { allow: found.allowed.join(", ") },
        json: { error: `method ${request.method} not allowed here` },
      });
    }
    const { route, params } = found;
    this.state.requests.set(route.name, (this.state.requests.get(route.name) ?? 0) + 1);
    const spec = route.spec;
    if (spec.kind === "public") return this.send(res, spec.handle(request, params, this.ctx));
    if (spec.kind === "signed") {
      const auth = this.checkWalletAuth(request, spec.audiences);
      if (typeof auth !== "string") return this.send(res, auth);
      return this.send(res, spec.handle(request, params, this.ctx, auth));
    }
    await this.handlePaid(res, request, route, params, paymentHeader);
  }

  /** v2 challenges expect PAYMENT-SIGNATURE; stoka and v1 challenges expect X-PAYMENT. */
  private paymentHeader(req: http.IncomingMessage): string | undefined {
    const name = this.switches.challengeForm === "x402v2" ? "payment-signature" : "x-payment";
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  }

  private async handlePaid(
    res: http.ServerResponse,
    req: EmulatorRequest,
    route: RouteDef,
    params: string[],
    paymentHeader: string | undefined,
  ): Promise<void> {
    const spec = route.spec;
    if (spec.kind !== "paid") throw new Error("not a paid route");
    const paying = paymentHeader !== undefined;
    const limited = takeFault(
      this.switches,
      "rate_limited",
      (f) => f.stage === undefined || (f.stage === "paid") === paying,
    );
    if (limited) {
      const after = String(limited.retryAfterSeconds ?? 1);
      return this.send(res, {
        status: 429,
        headers: { "retry-after": after },
        json: { error: "rate limited" },
      });
    }
    const unavailable = paying ? undefined : takeFault(this.switches, "unavailable");
    if (unavailable) {
      return this.send(res, {
        status: 503,
        headers:
          unavailable.retryAfterSeconds !== undefined
            ? { "retry-after": String(unavailable.retryAfterSeconds) }
            : {},
        json: { error: "temporarily unavailable" },
      });
    }
    const quoted = await spec.quote(req, params, this.ctx);
    if (!("price" in quoted)) return this.send(res, quoted);
    const quote: Quote = {
      price: quoted.price,
      network: this.chain.info.network,
      asset: this.chain.info.usdcAsset,
      payTo: this.payTo,
      maxTimeoutSeconds: this.ctx.maxTimeoutSeconds,
      resourceUrl: req.url,
      description: quoted.description,
      mimeType: quoted.mimeType,
    };
    if (paymentHeader === undefined) {
      const slow = takeFault(this.switches, "slow", (f) => f.stage === "challenge");
      if (slow) await this.sleep(slow.delayMs ?? 1000);
      const malformed = takeFault(this.switches, "bad_challenge") !== undefined;
      return this.send(res, this.challenge(quote, "payment required", malformed));
    }
    const moved = takeFault(this.switches, "price_change");
    if (moved) quote.price += BigInt(moved.priceDelta ?? 100);

    let payload: unknown;
    try {
      payload = decodeBase64Json(paymentHeader);
    } catch (e) {
      return this.send(res, {
        status: 400,
        json: { error: `payment header is not base64 JSON: ${(e as Error).message}` },
      });
    }
    const check = verifyPayment(
      payload,
      {
        network: quote.network,
        networkPassphrase: this.chain.info.passphrase,
        asset: quote.asset,
        payTo: quote.payTo,
        price: quote.price,
        maxTimeoutSeconds: quote.maxTimeoutSeconds,
        ledgerCloseSeconds: this.chain.clock.closeSeconds,
      },
      { currentLedger: this.chain.clock.current(), isNonceUsed: (a, n) => this.chain.isNonceUsed(a, n) },
      {
        form: this.switches.challengeForm,
        shape: this.switches.paymentShape,
        strictAccepted: this.switches.strictAccepted,
        // Rebuilt from this request's quote, as an official x402 server rebuilds its own.
        issued: issuedRequirement(this.switches.challengeForm, quote, this.switches.requirementExtras),
      },
    );
    if (!check.ok) {
      if (check.status === 400) return this.send(res, { status: 400, json: { error: check.reason } });
      return this.send(res, this.challenge(quote, check.reason));
    }
    if (this.chain.balanceOf(check.payer) < check.amount) {
      return this.send(res, this.challenge(quote, "insufficient USDC balance (facilitator refused)"));
    }
    const pre = spec.precheck?.(req, params, this.ctx, check.payer, check.amount);
    if (pre) {
      if (pre.status === 402) return this.send(res, this.challenge(quote, String(pre.json?.error)));
      return this.send(res, pre);
    }
    if (takeFault(this.switches, "error_before_settle")) {
      return this.send(res, { status: 500, json: { error: "internal error before settlement" } });
    }
    if (takeFault(this.switches, "settle_fails")) {
      return this.send(res, this.challenge(quote, "settlement failed: transaction was not accepted"));
    }
    // Settle: consume the nonce, move the money, record the charge, then do the work. No await
    // separates verification from here, so two concurrent replays cannot both pass.
    if (!this.chain.consumeNonce(check.payer, check.nonce)) {
      return this.send(res, this.challenge(quote, "payment was already used (nonce replayed)"));
    }
    this.chain.transfer(check.payer, this.payTo, check.amount);
    this.state.recordCharge({
      atMs: this.ctx.now(),
      payer: check.payer,
      route: route.name,
      amount: check.amount,
      tx: check.txHash,
      nonce: check.nonce,
    });
    const out = spec.fulfil(req, params, this.ctx, check.payer, check.amount);
    const receipt = encodeReceiptHeader({
      success: true,
      transaction: check.txHash,
      network: quote.network,
      payer: check.payer,
    });
    const receiptHeader =
      this.switches.challengeForm === "x402v2" ? "payment-response" : "x-payment-response";
    if (!takeFault(this.switches, "omit_receipt")) out.headers = { ...out.headers, [receiptHeader]: receipt };

    const slow = takeFault(this.switches, "slow", (f) => f.stage !== "challenge");
    if (slow) await this.sleep(slow.delayMs ?? 1000);
    if (takeFault(this.switches, "drop_after_settle")) {
      res.socket?.destroy();
      return;
    }
    if (takeFault(this.switches, "error_after_settle")) {
      return this.send(res, { status: 500, json: { error: "internal error after settlement" } });
    }
    this.send(res, out);
  }

  /** A 402 in the current form, carrying the requirement issued for `quote`. */
  private challenge(quote: Quote, error?: string, malformed = false) {
    return buildChallenge(
      this.switches.challengeForm,
      quote,
      error,
      malformed,
      this.switches.requirementExtras,
    );
  }

  /** Returns the signer's G-address, or the 401 to send (docs/wire-protocol.md, Wallet-signed routes). */
  private checkWalletAuth(req: EmulatorRequest, audiences: [string, string]): string | EmulatorResponse {
    const deny = (error: string): EmulatorResponse => ({ status: 401, json: { error } });
    const raw = req.headers.authorization;
    if (!raw) return deny("missing Authorization: Stellar <G>:<challenge_id>:<hex-signature>");
    const auth = parseStellarAuthorization(raw);
    if (!auth)
      return deny("malformed Authorization header; expected Stellar <G>:<challenge_id>:<hex-signature>");
    const challenge = this.state.getChallenge(auth.challengeId);
    if (!challenge) return deny("unknown challenge");
    if (challenge.used) return deny("challenge already used");
    // Single use: consumed by its first presentation, whatever the outcome.
    challenge.used = true;
    if (challenge.expiresAtMs <= this.ctx.now()) return deny("challenge expired");
    if (!audiences.includes(challenge.audience)) {
      return deny(
        `challenge audience ${challenge.audience} does not match this route (${audiences.join(" or ")})`,
      );
    }
    if (!verifyChallengeSignature(auth.publicKey, challenge.message, auth.signatureHex)) {
      return deny("signature does not verify for that key and challenge");
    }
    return auth.publicKey;
  }

  /** The sandbox control API: switches, faults, funding, the ledger and the record of charges. */
  private control(method: string, path: string, body: Buffer): EmulatorResponse {
    let input: Record<string, unknown> = {};
    if (body.length > 0) {
      try {
        input = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
      } catch {
        return { status: 400, json: { error: "control body must be JSON" } };
      }
    }
    const key = `${method} ${path}`;
    switch (key) {
      case "GET /_sandbox/state":
        return {
          status: 200,
          json: {
            switches: this.switches,
            ledger: this.chain.clock.current(),
            pay_to: this.payTo,
            charges: this.state.charges.map((c) => ({ ...c, amount: c.amount.toString() })),
            charged_total_atomic: this.chargedTotal().toString(),
          },
        };
      case "PUT /_sandbox/switches": {
        const { faults: _ignored, ...rest } = input;
        Object.assign(this.switches, rest);
        return { status: 200, json: { switches: this.switches } };
      }
      case "POST /_sandbox/faults": {
        if (!isFaultKind(input.kind)) return { status: 400, json: { error: "unknown fault kind" } };
        this.addFault(input as unknown as Fault);
        return { status: 200, json: { switches: this.switches } };
      }
      case "DELETE /_sandbox/faults":
        this.switches.faults = [];
        return { status: 200, json: { switches: this.switches } };
      case "POST /_sandbox/fund":
        if (typeof input.address !== "string") return { status: 400, json: { error: "address is required" } };
        this.chain.fund(input.address, BigInt(String(input.amount ?? "0")));
        return { status: 200, json: { balance_atomic: this.chain.balanceOf(input.address).toString() } };
      case "POST /_sandbox/ledger/advance":
        this.chain.clock.advance(Number(input.ledgers ?? 1));
        return { status: 200, json: { ledger: this.chain.clock.current() } };
      default:
        return { status: 404, json: { error: `no sandbox control ${key}` } };
    }
  }

  private send(res: http.ServerResponse, out: EmulatorResponse): void {
    if (res.headersSent || res.destroyed) return;
    const headers: Record<string, string> = { ...out.headers };
    let payload: Buffer | undefined = out.body;
    if (out.json !== undefined) {
      payload = Buffer.from(JSON.stringify({ ...MERGE_FIELDS, ...out.json }));
      headers["content-type"] = "application/json";
    }
    if (out.status === 204 || out.status === 304) payload = undefined;
    headers["content-length"] = String(payload?.length ?? 0);
    res.writeHead(out.status, headers);
    res.end(payload);
  }
}

function listenOn(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}
