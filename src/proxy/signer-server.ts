import { randomUUID } from "node:crypto";
import https from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter } from "prom-client";
import type { Registry } from "prom-client";
import { matchingBudgets } from "../budget/budget.js";
import type { SignerOptions, SignerToken } from "../config/config.js";
import { findPaidHost, servedPaidHost } from "../config/paid-hosts.js";
import { upstreamUrl } from "../http/upstream-url.js";
import { StokaProxyError, errorResponse } from "../errors.js";
import type { OpenPayment } from "../payment/book.js";
import { afterReservation, decide, readChallenge } from "../payment/decide.js";
import type { Refusal } from "../payment/decide.js";
import {
  closeFromReport,
  readOutcomeReport,
  readSignRequest,
  walletAuthAllowed,
} from "../payment/remote-signing.js";
import type { SignRequest } from "../payment/remote-signing.js";
import { readBoundedJson } from "../parsing/bounded-json.js";
import { NETWORKS } from "../stellar/networks.js";
import { verifyChallengeSignature } from "../stellar/wallet-auth.js";
import { routeName } from "../stoka/route-names.js";
import { parseChallenge } from "../x402/challenge.js";
import { jsonEqual } from "../x402/json-equal.js";
import { checkPayment } from "../x402/payment-check.js";
import { offerFor } from "../x402/payment-payload.js";
import { resourceElsewhere } from "../x402/resource-host.js";
import { holdForApproval } from "./approval-gate.js";
import { identify } from "./client-identity.js";
import type { ProxyContext } from "./context.js";

/**
 * The signer role (docs/security.md, Keyless sidecars): the team gateway signs for sidecars
 * that hold no seed, on its own HTTPS listener. A sidecar's token names a client; that
 * client's budgets (`match: {clients: […]}`) and the gateway's own pinned terms decide, exactly
 * as for a request the gateway forwards itself:
 *
 *   POST /signer/v1/payments            token ─▶ client; the 402 re-read; paid host, payee,
 *                                       asset, network, timeout, price cap, kill switch,
 *                                       budget reserved (ledger: reserved, under the client)
 *                                       ─▶ signed, checked ─▶ ledger: sent ─▶ {payment_id, header}
 *                                       refused ─▶ 403 {code, error} (nothing reserved or signed)
 *   POST /signer/v1/payments/{id}/outcome   the token's own payment only ─▶ closing row
 *                                       (payment/remote-signing.ts, closeFromReport)
 *   POST /signer/v1/wallet-auth         the token's routes, the route's audience ─▶ {signature}
 *   GET  /signer/v1/wallet              {address}
 *
 * Nothing the signer answers is anything it would not send itself: the header is its own,
 * built for a requirement of the 402 it read, to a payee it trusts.
 */
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_OPEN = 10_000;

interface Signed {
  client: string;
  payment: OpenPayment;
  atMs: number;
}

export class SignerServer {
  private readonly server: https.Server;
  /** Signed payments waiting for the sidecar's report; the lease closes the rest. */
  private readonly open = new Map<string, Signed>();
  url = "";

  private readonly requests: Counter<"client" | "endpoint" | "outcome"> | undefined;
  private readonly signedAtomic: Counter<"client"> | undefined;

  constructor(
    private readonly options: SignerOptions,
    private readonly ctx: ProxyContext,
    /** Where the signer's metrics register (the admin listener's /metrics); none = not counted. */
    registry?: Registry,
  ) {
    const registers = registry ? [registry] : [];
    // Labels stay bounded: `client` is a configured token's client (or "unknown").
    this.requests = registry
      ? new Counter({
          name: "stoka_proxy_signer_requests_total",
          help: "Calls to the signer role by client, endpoint and outcome.",
          labelNames: ["client", "endpoint", "outcome"],
          registers,
        })
      : undefined;
    this.signedAtomic = registry
      ? new Counter({
          name: "stoka_proxy_signer_signed_atomic_total",
          help: "Atomic units the signer role signed for keyless sidecars, by client.",
          labelNames: ["client"],
          registers,
        })
      : undefined;
    this.server = https.createServer(
      {
        cert: options.certPem,
        key: options.keyPem,
        // mTLS: a connection without a certificate from this CA ends in the handshake.
        ...(options.clientCaPem
          ? { ca: options.clientCaPem, requestCert: true, rejectUnauthorized: true }
          : {}),
        headersTimeout: 10_000,
        requestTimeout: 30_000,
        maxHeaderSize: 16 * 1024,
      },
      (req, res) => {
        this.handle(req, res).catch((e: unknown) => {
          this.ctx.logger.error({ err: (e as Error).message }, "signer: request failed");
          answerError(res, e);
        });
      },
    );
  }

  async listen(): Promise<string> {
    const { host, port } = this.options.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const a = this.server.address() as AddressInfo;
    this.url = `https://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`;
    return this.url;
  }

  /**
   * Stops taking connections; a signing in flight gets `graceMs` to answer (its payment is
   * already booked: an answer lost now leaves it for the lease to close as indeterminate).
   */
  async close(graceMs = 5000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const cut = setTimeout(() => this.server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(cut);
  }

  /** Tokens named by their index, so the matching entry (its routes) is found, not just its client. */
  private tokens(): { name: string; tokenSha256: string }[] {
    return this.options.tokens.map((t, i) => ({ name: String(i), tokenSha256: t.tokenSha256 }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const found = identify(req.headers, this.tokens(), "", true);
    const token = found.ok ? this.options.tokens[Number(found.client)] : undefined;
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    res.once("finish", () =>
      this.requests?.inc({
        client: token?.client ?? "unknown",
        endpoint: endpointOf(path),
        outcome: outcomeOf(res.statusCode),
      }),
    );
    if (!token) {
      req.resume();
      const reason = found.ok ? "unknown token" : found.reason;
      this.ctx.securityEvent("signer_unauthorized", { detail: `signer: ${reason}` });
      return answerError(
        res,
        new StokaProxyError("signer_unauthorized", reason, "send the pod's token as Authorization: Bearer"),
      );
    }
    const who = { client: token.client };
    if (req.method === "GET" && path === "/signer/v1/wallet") {
      req.resume();
      return answerJson(res, 200, { address: this.ctx.signer?.address ?? this.ctx.messageSigner?.address });
    }
    if (req.method !== "POST") {
      req.resume();
      return answerError(res, badRequest(`${req.method ?? "?"} ${path} is not a signer endpoint`));
    }
    const body = await readJson(req);
    if (!body.ok) return answerError(res, badRequest(body.reason));
    if (path === "/signer/v1/payments") return this.signPayment(res, who.client, body.value);
    const outcome = /^\/signer\/v1\/payments\/([A-Za-z0-9-]{1,64})\/outcome$/.exec(path);
    if (outcome) return this.takeOutcome(res, who.client, outcome[1] as string, body.value);
    if (path === "/signer/v1/wallet-auth") return this.signWalletAuth(res, token, body.value);
    return answerError(res, badRequest(`POST ${path} is not a signer endpoint`));
  }

  /** Logs one line per signer answer: client, what, outcome; never a header or a token. */
  private log(facts: Record<string, unknown>, msg: string): void {
    this.ctx.logger.info({ signer: true, ...facts }, msg);
  }

  private async signPayment(res: ServerResponse, client: string, json: unknown): Promise<void> {
    const read = readSignRequest(json);
    if (!read.ok) return answerError(res, badRequest(read.reason));
    const r = read.value;
    const refused = (x: Refusal) => {
      // A pod token asking for terms the signer does not trust is what a stolen one would do.
      if (x.code === "terms_rejected")
        this.ctx.securityEvent("terms_rejected", {
          client,
          host: r.host,
          route: routeName(r.method, r.url.pathname),
          detail: `signer: ${x.reason}`,
        });
      this.log(
        { client, route: routeName(r.method, r.url.pathname), outcome: "refused", code: x.code },
        "signer: payment refused",
      );
      return answerJson(res, 403, {
        error: x.reason,
        code: x.code,
        hint: "nothing was reserved or signed",
        ...x.extra,
      });
    };
    const decided = await this.decidePayment(client, r);
    if (decided.kind === "refuse") return refused(decided);
    const { decision, route, url, paidHost } = decided;
    const signer = decision.signer;
    const paymentId = randomUUID();
    const reservation = await this.ctx.book.reserve(
      {
        paymentId,
        // The sidecar's request id: the two ledgers join on it (docs/operations.md).
        requestId: r.requestId,
        client,
        route,
        method: r.method,
        url: url.toString(),
        amount: decision.price,
        payTo: decision.requirement.payTo,
        asset: decision.requirement.asset,
        network: decision.requirement.network,
      },
      decision.budgets,
    );
    const reserved = afterReservation(reservation, decision.price);
    if (reserved.kind === "refuse") return refused(reserved);
    const payment = reserved.payment;
    // A budget that asks for a person's approval holds the signature here, as on the gateway's
    // own path; the sidecar waiting on this answer (its timeout_ms) bounds the wait too.
    const held = await holdForApproval(this.ctx, {
      price: decision.price,
      budgets: decision.budgets,
      record: {
        requestId: r.requestId,
        mode: "gateway",
        method: r.method,
        host: paidHost.host,
        route,
        client,
        paymentId,
      },
      target: { host: paidHost, url },
      method: r.method,
      res,
    });
    if (held) {
      await payment.close(held.close);
      return refused(held.refusal);
    }
    const offer = offerFor(decision.challenge, decision.requirement);
    let header: string;
    let txHash: string;
    try {
      header = await signer.sign(offer);
      const check = checkPayment(header, offer, NETWORKS[this.ctx.config.network].passphrase);
      if (!check.ok) throw new Error(`the signed payment does not match the terms: ${check.reason}`);
      txHash = check.txHash;
    } catch (e) {
      const msg = e instanceof StokaProxyError ? `${e.code}: ${e.message}` : (e as Error).message;
      await payment.close({ state: "failed", tx: null, status: null, reason: msg, budget: "release" });
      this.log({ client, route, payment_id: paymentId, outcome: "failed" }, "signer: signing failed");
      return answerError(
        res,
        new StokaProxyError(
          "payment_create_failed",
          `the signer could not sign: ${msg}`,
          "check the signer's wallet and RPC",
        ),
      );
    }
    // Booked as sent before the header leaves: from the answer on, money may move.
    await payment.sent(txHash, `signed for a sidecar (its payment ${r.sidecarPaymentId})`);
    this.remember(paymentId, { client, payment, atMs: this.ctx.now() });
    this.log(
      {
        client,
        route,
        payment_id: paymentId,
        sidecar_payment_id: r.sidecarPaymentId,
        amount: decision.price.toString(),
        outcome: "signed",
      },
      "signer: payment signed",
    );
    this.signedAtomic?.inc({ client }, Number(decision.price));
    return answerJson(res, 200, { payment_id: paymentId, header, address: signer.address });
  }

  /** Every check the gateway makes before paying, on what the sidecar sent. */
  private async decidePayment(client: string, r: SignRequest) {
    const cfg = this.ctx.config;
    const refusal = (code: Refusal["code"], reason: string): Refusal => ({
      kind: "refuse",
      code,
      reason,
      extra: {},
    });
    const entry = findPaidHost(cfg.paidHosts, r.host, r.port);
    if (!entry) return refusal("terms_rejected", `${r.host} is not a paid host this signer pays`);
    // Payees are learned from the signer's own idea of the host, never from the sidecar's URL.
    const paidHost = servedPaidHost(entry, "https", r.port);
    // Set as a path, never resolved: a pod's `//evil.example/x` must not move the ledger's URL
    // (what `budgets restore` matches hosts on) or the approver's view to another host.
    const url = upstreamUrl(paidHost.upstream, r.url.pathname + r.url.search);
    const read = readChallenge(
      parseChallenge(
        r.challenge.paymentRequired !== undefined ? { "payment-required": r.challenge.paymentRequired } : {},
        r.challenge.body,
      ),
    );
    if (read.kind === "refuse") return read;
    const chosen = read.challenge.accepts.filter((a) => jsonEqual(a.raw, r.accepted));
    if (chosen.length === 0) return refusal("terms_rejected", "the requirement asked for is not in the 402");
    const challenge = { ...read.challenge, accepts: chosen };
    const elsewhere = resourceElsewhere(challenge.resource, [entry.host, paidHost.upstream.hostname]);
    if (elsewhere) return refusal("terms_rejected", elsewhere);
    const route = routeName(r.method, r.url.pathname);
    const local = this.ctx.signer?.kind === "remote" ? undefined : this.ctx.signer;
    const budgets = matchingBudgets(cfg.budgets, {
      host: entry.host,
      method: r.method,
      path: r.url.pathname,
      route,
      client,
    });
    // A token spends at most its own quota: a budget that names its client must match, so a
    // token no budget names cannot spend budgets shared with the gateway's own traffic.
    if (!budgets.some((b) => b.match.clients?.includes(client)))
      return refusal(
        "no_budget",
        `no budget names client ${client} (match: {clients: [${client}]}); a pod token spends only its own budget`,
      );
    const decision = decide({
      challenge,
      host: entry.host,
      payees: await this.ctx.payees.allowed(paidHost),
      terms: { network: cfg.network, asset: cfg.asset, ...cfg.terms },
      budgets,
      signer: local,
    });
    if (decision.kind === "refuse") return decision;
    const switched = this.ctx.resilience.paymentSwitch.decide();
    if (switched.kind === "stopped")
      return refusal(
        "payments_stopped",
        `payments are stopped on the signer (${switched.reason}; by ${switched.by})`,
      );
    if (switched.kind === "dry_run") return refusal("dry_run", "the signer is in dry run: nothing is signed");
    return { kind: "pay" as const, decision, route, url, paidHost };
  }

  private remember(id: string, s: Signed): void {
    // Past the lease the store has closed it as indeterminate; a late report finds nothing.
    const oldest = this.ctx.now() - this.ctx.config.leaseMs;
    for (const [k, v] of this.open) {
      if (v.atMs >= oldest && this.open.size < MAX_OPEN) break;
      this.open.delete(k);
    }
    this.open.set(id, s);
  }

  private async takeOutcome(res: ServerResponse, client: string, id: string, json: unknown): Promise<void> {
    const open = this.open.get(id);
    // Another token's payment is answered as unknown: a token learns nothing of others'.
    if (!open || open.client !== client)
      return answerError(
        res,
        new StokaProxyError(
          "signer_payment_unknown",
          `no open payment ${id} signed for this token`,
          "report only payments this sidecar was signed; a late report is closed by the signer's lease",
        ),
      );
    const read = readOutcomeReport(json);
    if (!read.ok) return answerError(res, badRequest(read.reason));
    this.open.delete(id);
    const close = closeFromReport(read.value);
    await open.payment.close(close);
    this.log(
      { client, payment_id: id, reported: read.value.state, outcome: close.state },
      "signer: payment closed",
    );
    return answerJson(res, 200, { payment_id: id, state: close.state });
  }

  private async signWalletAuth(res: ServerResponse, token: SignerToken, json: unknown): Promise<void> {
    const b = (typeof json === "object" && json !== null ? json : {}) as Record<string, unknown>;
    const verdict = walletAuthAllowed({
      route: b.route,
      message: b.message,
      allowedRoutes: token.walletAuthRoutes,
      rules: this.ctx.config.walletAuth,
    });
    const signer = this.ctx.messageSigner;
    if (!verdict.ok) {
      this.ctx.securityEvent("signer_refused", {
        client: token.client,
        route: typeof b.route === "string" ? b.route.slice(0, 32) : "",
        detail: verdict.reason,
      });
      this.log(
        { client: token.client, route: String(b.route).slice(0, 32), outcome: "refused" },
        "signer: wallet-auth refused",
      );
      return answerJson(res, 403, { error: verdict.reason, code: verdict.code, hint: "nothing was signed" });
    }
    // The config refuses a signer role without a key, and a key beside a remote signer.
    if (!signer)
      return answerError(
        res,
        new StokaProxyError(
          "wallet_auth_failed",
          "the signer has no wallet key",
          "set STELLAR_SECRET on the signer",
        ),
      );
    const message = b.message as string;
    const signature = await signer.signMessage(message, { route: b.route as string });
    if (!verifyChallengeSignature(signer.address, message, signature))
      return answerError(
        res,
        new StokaProxyError("sign_failed", "the signature does not verify", "check the signer's wallet"),
      );
    this.log({ client: token.client, route: b.route, outcome: "signed" }, "signer: wallet-auth signed");
    return answerJson(res, 200, { signature, address: signer.address });
  }
}

function endpointOf(path: string): string {
  if (path === "/signer/v1/payments") return "payments";
  if (/^\/signer\/v1\/payments\/[^/]+\/outcome$/.test(path)) return "outcome";
  if (path === "/signer/v1/wallet-auth") return "wallet_auth";
  if (path === "/signer/v1/wallet") return "wallet";
  return "other";
}

function outcomeOf(status: number): string {
  if (status === 200) return "ok";
  if (status === 401) return "unauthorized";
  if (status === 400) return "bad_request";
  if (status === 404) return "unknown_payment";
  return status >= 500 ? "failed" : "refused";
}

function badRequest(reason: string): StokaProxyError {
  return new StokaProxyError(
    "signer_bad_request",
    reason,
    "this sidecar and the signer may run different versions",
  );
}

function answerJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  if (res.headersSent) return void res.destroy();
  const payload = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
  res.end(payload);
}

function answerError(res: ServerResponse, e: unknown): void {
  const { status, body } = errorResponse(e);
  answerJson(res, status, body);
}

async function readJson(
  req: IncomingMessage,
): Promise<{ ok: true; value: unknown } | { ok: false; reason: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY_BYTES)
      return { ok: false, reason: `the body is larger than ${MAX_BODY_BYTES} bytes` };
    chunks.push(c);
  }
  const read = readBoundedJson(Buffer.concat(chunks).toString("utf8"), {
    maxBytes: MAX_BODY_BYTES,
    maxDepth: 32,
  });
  return read.ok
    ? { ok: true, value: read.value }
    : { ok: false, reason: `the body is not JSON: ${read.reason}` };
}
