import https from "node:https";
import { rootCertificates } from "node:tls";
import { StokaProxyError } from "../errors.js";
import type { RemoteSignerOptions } from "../config/config.js";
import { readBoundedJson } from "../parsing/bounded-json.js";
import type { PaymentOffer } from "../x402/payment-payload.js";
import type { MessageSigner } from "./message-signer.js";
import type { PaymentSigner, SignContext, SignedOutcome } from "./payment-signer.js";

/**
 * A keyless sidecar's signers (docs/security.md, Keyless sidecars): every payment and every
 * wallet-auth message is signed by the team gateway in its signer role, over HTTPS with the
 * pod's bearer token (and a client certificate when the signer asks for mTLS).
 *
 *   sidecar ──POST /signer/v1/payments {request, challenge, accepted}──▶ signer
 *                 ◀── 200 {payment_id, header, address}   (the signer booked it as `sent`)
 *                 ◀── 4xx {code, error}                    ─▶ signer_refused (the app: 402)
 *                 ◀── 5xx / no answer / not JSON           ─▶ signer_unavailable (the app: 502)
 *   sidecar ──POST /signer/v1/payments/{id}/outcome {state, tx, …}──▶ signer   (after the paid retry)
 *   sidecar ──POST /signer/v1/wallet-auth {route, message}──▶ signer ◀── {signature, address}
 *
 * The header the signer returns is still checked by the proxy against its own offer
 * (x402/payment-check.ts) before it is sent, as any signer's is.
 */
const MAX_ANSWER_BYTES = 256 * 1024;
/** Outcome reports wait for (signer id by local id) at most this many; the oldest is dropped. */
const MAX_PENDING_REPORTS = 10_000;

export interface SignerAnswer {
  status: number;
  json: Record<string, unknown>;
}

export class RemoteSignerClient {
  private readonly agent: https.Agent;
  /** The wallet's address, as the signer last named it (or as configured). */
  address: string | undefined;

  constructor(
    private readonly options: RemoteSignerOptions,
    address?: string,
  ) {
    this.address = address;
    this.agent = new https.Agent({
      keepAlive: true,
      maxSockets: 64,
      ...(options.caPems.length > 0 ? { ca: [...rootCertificates, ...options.caPems] } : {}),
      ...(options.clientCertPem ? { cert: options.clientCertPem } : {}),
      ...(options.clientKeyPem ? { key: options.clientKeyPem } : {}),
    });
  }

  /** Where the signer is, for messages (never the token). */
  get where(): string {
    return this.options.url.origin;
  }

  /**
   * One JSON call, bounded in time (`timeout_ms` for the whole exchange) and size. Resolves
   * with any HTTP answer; rejects with signer_unavailable when there is none.
   */
  async call(method: "GET" | "POST", path: string, body?: unknown): Promise<SignerAnswer> {
    try {
      return await this.once(method, path, body);
    } catch (e) {
      // A kept-alive socket the signer closed as idle just as it was reused: the request never
      // reached it (Node's docs, request.reusedSocket), so one fresh try is not a second booking.
      if (!(e instanceof StaleSocket)) throw e;
      return this.once(method, path, body, true);
    }
  }

  private once(method: "GET" | "POST", path: string, body: unknown, fresh = false): Promise<SignerAnswer> {
    const url = new URL(path, this.options.url);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<SignerAnswer>((resolve, reject) => {
      let settled = false;
      const fail = (why: string, stale = false) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(stale ? new StaleSocket() : unavailable(this.where, why));
      };
      const req = https.request(
        url,
        {
          method,
          // The retry after a stale socket takes a connection of its own.
          agent: fresh ? false : this.agent,
          ...(fresh
            ? {
                ca:
                  this.options.caPems.length > 0 ? [...rootCertificates, ...this.options.caPems] : undefined,
                cert: this.options.clientCertPem,
                key: this.options.clientKeyPem,
              }
            : {}),
          headers: {
            authorization: `Bearer ${this.options.token}`,
            accept: "application/json",
            ...(payload
              ? { "content-type": "application/json", "content-length": String(payload.length) }
              : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > MAX_ANSWER_BYTES) return fail("its answer is too large");
            chunks.push(c);
          });
          res.on("error", (e) => fail(e.message));
          res.on("end", () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            const read = readBoundedJson(Buffer.concat(chunks).toString("utf8"));
            const json =
              read.ok && typeof read.value === "object" && read.value !== null && !Array.isArray(read.value)
                ? (read.value as Record<string, unknown>)
                : {};
            resolve({ status: res.statusCode ?? 0, json });
          });
        },
      );
      const timer = setTimeout(
        () => fail(`no answer within ${this.options.timeoutMs} ms`),
        this.options.timeoutMs,
      );
      let answered = false;
      req.on("response", () => (answered = true));
      req.on("error", (e) => {
        const code = (e as NodeJS.ErrnoException).code;
        const stale = !fresh && !answered && req.reusedSocket && (code === "ECONNRESET" || code === "EPIPE");
        fail(code ?? e.message, stale);
      });
      req.end(payload);
    });
  }

  /** Learns the wallet's address (for X-Stoka-Owner) before the first payment; best effort. */
  async learnAddress(): Promise<void> {
    try {
      const a = await this.call("GET", "/signer/v1/wallet");
      this.noteAddress(a.json.address);
    } catch {
      // The first payment's answer names it too.
    }
  }

  noteAddress(value: unknown): void {
    if (typeof value === "string" && /^G[A-Z2-7]{55}$/.test(value)) this.address = value;
  }

  close(): void {
    this.agent.destroy();
  }
}

class StaleSocket extends Error {}

function unavailable(where: string, why: string): StokaProxyError {
  return new StokaProxyError(
    "signer_unavailable",
    `the signer at ${where} did not answer usefully: ${why}; nothing was paid`,
    "check that the signer Deployment runs and its Service is reachable, then retry",
  );
}

/** What the signer said, as this sidecar's error: its 4xx refusals, or unavailable. */
export function signerAnswerError(
  where: string,
  a: SignerAnswer,
  what: "payment" | "wallet-auth",
): StokaProxyError {
  const code = typeof a.json.code === "string" ? a.json.code.slice(0, 64) : `http_${a.status}`;
  const reason = typeof a.json.error === "string" ? a.json.error.slice(0, 1000) : `HTTP ${a.status}`;
  if (a.status >= 400 && a.status < 500) {
    const details = {
      signer_code: code,
      ...(typeof a.json.budget === "object" ? { budget: a.json.budget } : {}),
    };
    return what === "payment"
      ? new StokaProxyError(
          "signer_refused",
          `the signer refused this payment (${code}): ${reason}`,
          code === "signer_unauthorized"
            ? "check the sidecar's wallet.remote_signer.token_file against the signer's tokens"
            : "this pod's token is limited by the signer's budgets and terms; nothing was paid",
          { details },
        )
      : new StokaProxyError(
          "wallet_auth_failed",
          `the signer refused to sign this wallet-auth challenge (${code}): ${reason}`,
          "check the token's wallet_auth_routes on the signer; nothing was forwarded",
          { details },
        );
  }
  return unavailable(where, `HTTP ${a.status} (${code})`);
}

/** Payments signed by the signer role; kind `remote`. */
export class RemotePaymentSigner implements PaymentSigner {
  readonly kind = "remote" as const;
  /** Local payment id → the signer's payment id, until the outcome is reported. */
  private readonly pending = new Map<string, string>();

  constructor(
    readonly client: RemoteSignerClient,
    private readonly warn: (msg: string, facts: Record<string, unknown>) => void = () => undefined,
  ) {}

  get address(): string | undefined {
    return this.client.address;
  }

  async sign(offer: PaymentOffer, context?: SignContext): Promise<string> {
    if (!context)
      throw new StokaProxyError(
        "payment_create_failed",
        "the remote signer needs the request it pays for",
        "this is a bug in stoka-proxy; please report it",
      );
    const a = await this.client.call("POST", "/signer/v1/payments", {
      request: {
        payment_id: context.paymentId,
        request_id: context.requestId,
        method: context.method,
        host: context.host,
        port: context.port,
        url: context.url,
      },
      challenge: {
        ...(context.challenge.paymentRequired !== undefined
          ? { payment_required: context.challenge.paymentRequired }
          : {}),
        body: context.challenge.body,
      },
      accepted: offer.requirement.raw,
    });
    if (a.status !== 200) throw signerAnswerError(this.client.where, a, "payment");
    const { header, payment_id: signerId } = a.json;
    if (typeof header !== "string" || typeof signerId !== "string")
      throw unavailable(this.client.where, "its answer has no header or payment_id");
    this.client.noteAddress(a.json.address);
    if (this.pending.size >= MAX_PENDING_REPORTS) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
    }
    this.pending.set(context.paymentId, signerId);
    return header;
  }

  /** The signer's payment id for a local one (logs, tests). */
  signerPaymentId(paymentId: string): string | undefined {
    return this.pending.get(paymentId);
  }

  async reportOutcome(paymentId: string, outcome: SignedOutcome): Promise<void> {
    const signerId = this.pending.get(paymentId);
    if (signerId === undefined) return;
    this.pending.delete(paymentId);
    try {
      const a = await this.client.call(
        "POST",
        `/signer/v1/payments/${encodeURIComponent(signerId)}/outcome`,
        {
          sidecar_payment_id: paymentId,
          ...outcome,
        },
      );
      if (a.status !== 200)
        this.warn("the signer did not take the payment's outcome; its lease will close it as indeterminate", {
          payment_id: paymentId,
          signer_payment_id: signerId,
          status: a.status,
        });
    } catch (e) {
      this.warn(
        "the signer could not be told the payment's outcome; its lease will close it as indeterminate",
        {
          payment_id: paymentId,
          signer_payment_id: signerId,
          err: (e as Error).message,
        },
      );
    }
  }
}

/** Wallet-auth messages signed by the signer role. */
export class RemoteMessageSigner implements MessageSigner {
  constructor(readonly client: RemoteSignerClient) {}

  get address(): string {
    return this.client.address ?? "";
  }

  async signMessage(message: string, context?: { route: string }): Promise<string> {
    const a = await this.client.call("POST", "/signer/v1/wallet-auth", {
      route: context?.route ?? "other",
      message,
    });
    if (a.status !== 200) throw signerAnswerError(this.client.where, a, "wallet-auth");
    this.client.noteAddress(a.json.address);
    if (typeof a.json.signature !== "string")
      throw unavailable(this.client.where, "its answer has no signature");
    return a.json.signature.toLowerCase();
  }
}
