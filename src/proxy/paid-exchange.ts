import { randomUUID } from "node:crypto";
import { StokaProxyError } from "../errors.js";
import { verdictFor } from "../resilience/circuit-breaker.js";
import { requestIdentity } from "../resilience/idempotency.js";
import { decideResend } from "../resilience/paid-resend.js";
import type { PaidAnswer } from "../resilience/paid-resend.js";
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { matchingBudgets } from "../budget/budget.js";
import { readDecodedBody } from "../http/decoded-body.js";
import type { DecodedBody } from "../http/decoded-body.js";
import { UpstreamError } from "../http/upstream-client.js";
import type { UpstreamAnswer } from "../http/upstream-client.js";
import type { RequestRecord } from "../observability/request-record.js";
import type { OpenPayment } from "../payment/book.js";
import {
  MAX_CHALLENGE_BYTES,
  afterReservation,
  decide,
  readChallenge,
  refusalBody,
  refusalRecord,
} from "../payment/decide.js";
import type { Pay, Refusal } from "../payment/decide.js";
import { isSecondChallenge, settle, unanswered } from "../payment/settle.js";
import type { PaidAttempt, Settlement } from "../payment/settle.js";
import { NETWORKS } from "../stellar/networks.js";
import { withOwnerQuote } from "../stoka/owner-quote.js";
import type { PaymentSigner, SignContext } from "../wallet/payment-signer.js";
import { parseChallenge } from "../x402/challenge.js";
import type { Challenge } from "../x402/challenge.js";
import { receiptHeader } from "../x402/outcome.js";
import { resourceElsewhere } from "../x402/resource-host.js";
import { checkPayment } from "../x402/payment-check.js";
import { offerFor } from "../x402/payment-payload.js";
import type { PaymentOffer } from "../x402/payment-payload.js";
import type { PaidTarget, ProxyContext } from "./context.js";
import type { QuoteRequest } from "../payment/quote-ahead.js";
import { clientGone, clientGoneError } from "./client-gone.js";
import { sendError, sendRefusal, timedOut, upstreamFailure } from "./error-answers.js";
import type { PreparedRequest } from "./prepare.js";
import { holdForApproval } from "./approval-gate.js";
import { pipeUpstream } from "./respond.js";
import { timedSend } from "./timed-send.js";

/**
 * A request to a paid host (docs/architecture.md, Payments): the I/O of one payment, in a
 * straight line. What to pay and what an answer means are decided by payment/decide.ts and
 * payment/settle.ts; this file only fetches, reserves, signs, sends and writes what they say.
 *
 *   app ──req──▶ proxy ──req──▶ stoka ── not 402 ──▶ app (as it is)
 *                                  └─ 402 ─▶ readChallenge ─▶ payees (config or manifest) ─▶ decide
 *                                      refuse ─▶ 402 + X-Stoka-Proxy-Error (nothing signed, nothing reserved)
 *                                      pay ─▶ reserve (every matching budget; ledger: reserved)
 *                                               refuse ─▶ 402 + X-Stoka-Proxy-Error (budget_exceeded / _unavailable)
 *                                             ─▶ approval, when a budget asks (approval-gate.ts)
 *                                                  denied / timeout ─▶ ledger: failed (released) ─▶ 402
 *                                             ─▶ sign ─▶ check the header ─▶ ledger: sent
 *                                             ─▶ req + payment header ──▶ stoka (once, fresh connection)
 *                                             ─▶ settle ─▶ ledger row + budget step ─▶ app
 *
 * At most one payment per inbound request: this function signs at most once and never loops.
 */
export async function paidExchange(
  ctx: ProxyContext,
  prepared: PreparedRequest,
  res: ServerResponse,
  target: PaidTarget,
  record: RequestRecord,
): Promise<void> {
  const { method, body } = prepared;
  const wallet = ctx.signer?.address ?? ctx.messageSigner?.address;
  const headers = withOwnerQuote(prepared.headers, record.route, wallet);

  // 0. Quote-ahead (opt-in per route, payment/quote-ahead.ts): a challenge priced from the
  //    manifest, paid with the first request below; no 402 is asked for. Undefined: step 1.
  const quoteRequest = { target, route: record.route, headers, body, wallet };
  // Not with a remote signer: the signer role judges the 402 the server really sent (security.md).
  // Not when the app pays itself: its own header goes as sent, and the proxy adds no second one.
  const appPays = headers["x-payment"] !== undefined || headers["payment-signature"] !== undefined;
  let quoted =
    ctx.signer?.kind === "remote" || appPays || !ctx.quotes.applies(quoteRequest)
      ? undefined
      : await ctx.quotes.challengeFor(quoteRequest);
  // A quote the proxy would refuse (above the cap: the manifest's price may be stale) is not the
  // last word: the server is asked (the normal path), and its own 402 is judged instead.
  if (quoted && (await judgeChallenge(ctx, target, record, method, quoted)).kind === "refuse")
    quoted = undefined;

  // 1. The request as the app sent it (rate limited per upstream host; an unpaid attempt may
  //    be sent again on a connection error, 429, 502-504); anything but a 402 goes back untouched.
  let first: UpstreamAnswer | undefined;
  try {
    // A quoted request is still a send to the host: it waits for the host's rate limiter (and a
    // Retry-After pause) like any other (docs/architecture.md, Resilience); limited: nothing paid.
    const gone = () => res.destroyed;
    const r = quoted
      ? await ctx.resilience
          .admit(target.url.host, gone)
          .then((l) => (l ? ({ kind: "limited", ...l } as const) : undefined))
      : await ctx.resilience.sendUnpaid({ host: target.url.host, route: record.route, headers, gone }, () =>
          timedSend(record, () => send(ctx, target.url, method, headers, body)),
        );
    if (r?.kind === "limited") {
      record.errorCode = "rate_limited";
      return sendError(
        res,
        new StokaProxyError(
          "rate_limited",
          r.reason,
          `retry after ${r.retryAfterSeconds} s; nothing was paid`,
          {
            details: { retry_after_seconds: r.retryAfterSeconds },
          },
        ),
        { "retry-after": String(r.retryAfterSeconds) },
      );
    }
    first = r?.response;
  } catch (e) {
    return sendError(res, upstreamFailure(timedOut(e), "stoka", (e as Error).message, true));
  }
  // Most requests end here. What follows is its own function: an async function keeps all of
  // its locals alive across each await, and the payment flow's are many (bench/README.md).
  if (first && first.statusCode !== 402) return pipeUpstream(first, res, {}, ctx.via);
  return payChallenge(ctx, prepared, res, target, record, { headers, quoteRequest, quoted, first });
}

/** Step 2's judgement of a challenge (payees, pinned terms, budgets, the cap, the signer); pure. */
async function judgeChallenge(
  ctx: ProxyContext,
  target: PaidTarget,
  record: RequestRecord,
  method: string,
  challenge: Challenge,
): Promise<Refusal | Pay<PaymentSigner>> {
  return decide({
    challenge,
    host: target.host.host,
    payees: await ctx.payees.allowed(target.host),
    terms: { network: ctx.config.network, asset: ctx.config.asset, ...ctx.config.terms },
    budgets: matchingBudgets(ctx.config.budgets, {
      host: target.host.host,
      method,
      path: target.url.pathname,
      route: record.route,
      client: record.client,
    }),
    signer: ctx.signer,
    budgetsAtSigner: ctx.signer?.kind === "remote",
  });
}

/** Steps 2 to 5: the 402 (or the quote) judged, paid at most once, settled and answered. */
async function payChallenge(
  ctx: ProxyContext,
  prepared: PreparedRequest,
  res: ServerResponse,
  target: PaidTarget,
  record: RequestRecord,
  sent: {
    headers: OutgoingHttpHeaders;
    quoteRequest: QuoteRequest;
    quoted: Challenge | undefined;
    first: UpstreamAnswer | undefined;
  },
): Promise<void> {
  const { method, body } = prepared;
  const { headers, quoteRequest, quoted, first } = sent;
  const judge = (challenge: Challenge) => judgeChallenge(ctx, target, record, method, challenge);

  // 2. The 402, judged: readable? payees, terms, budgets, cap, signer?
  let decoded: DecodedBody;
  try {
    decoded = first ? await readDecodedBody(first, MAX_CHALLENGE_BYTES) : { ok: true, body: Buffer.alloc(0) };
  } catch (e) {
    // The 402 was cut or stalled: nothing to read, nothing signed.
    return sendError(res, upstreamFailure(timedOut(e), "stoka", (e as Error).message, true));
  }
  // Never pay on terms the proxy could not read whole (a body past the cap, or not decodable).
  const challengeBody = decoded.ok ? decoded.body : Buffer.alloc(0);
  const refuse = (r: Refusal): void => {
    Object.assign(record, refusalRecord(r));
    // The body is ours now, plain JSON: the upstream's coding (gzip, …) no longer applies.
    const kept = { ...first?.headers, "content-type": "application/json", "content-encoding": undefined };
    sendRefusal(res, { status: 402, headers: kept, body: refusalBody(challengeBody, r) }, r.code, ctx.via);
  };
  if (!decoded.ok)
    return refuse({ kind: "refuse", code: "challenge_unreadable", reason: decoded.reason, extra: {} });
  const read = quoted
    ? ({ kind: "readable", challenge: quoted } as const)
    : readChallenge(parseChallenge(first?.headers ?? {}, challengeBody.toString("utf8")));
  if (read.kind === "refuse") return refuse(read);
  const host = target.host.host;
  const elsewhere = resourceElsewhere(read.challenge.resource, [host, target.host.upstream.hostname]);
  if (elsewhere) return refuse({ kind: "refuse", code: "terms_rejected", reason: elsewhere, extra: {} });
  const decision = await judge(read.challenge);
  if (decision.kind === "refuse") return refuse(decision);

  // 3a. The kill switch and dry run: nothing is reserved or signed, the 402 goes back.
  const { requirement } = decision;
  const withheld = (code: "payments_stopped" | "dry_run" | "circuit_open", reason: string) => {
    ctx.resilience.metrics?.withheld.inc({ route: record.route, reason: code });
    Object.assign(record, { outcome: "refused", errorCode: code, reason });
  };

  const switched = ctx.resilience.paymentSwitch.decide();
  if (switched.kind !== "pay") {
    const code = switched.kind === "stopped" ? "payments_stopped" : "dry_run";
    const reason =
      switched.kind === "stopped"
        ? `payments are stopped (${switched.reason}; by ${switched.by})`
        : `dry run: would have paid ${decision.price} to ${requirement.payTo}; nothing was signed`;
    withheld(code, reason);
    if (switched.kind === "dry_run") {
      ctx.resilience.metrics?.dryRunAtomic.inc({ route: record.route }, Number(decision.price));
      ctx.logger.info(
        {
          request_id: record.requestId,
          route: record.route,
          client: record.client,
          would_pay_atomic: decision.price.toString(),
          pay_to: requirement.payTo,
          budgets: decision.budgets.map((b) => b.name),
        },
        "dry run: payment not signed",
      );
    }
    return refuse({
      kind: "refuse",
      code,
      reason,
      extra: { price: decision.price.toString(), since: new Date(switched.sinceMs).toISOString() },
    });
  }

  // 3b. The route's circuit breaker: open after repeated payment failures, one probe when half-open.
  const breaker = ctx.resilience.breakers?.for(record.route);
  const admitted = breaker?.check(ctx.now());
  ctx.resilience.noteTransition(admitted?.transition);
  if (admitted && !admitted.allow) {
    withheld("circuit_open", admitted.reason);
    return sendError(
      res,
      new StokaProxyError(
        "circuit_open",
        admitted.reason,
        `retry after ${admitted.retryAfterSeconds} s; nothing was paid`,
        {
          details: {
            route: record.route,
            state: admitted.state,
            retry_after_seconds: admitted.retryAfterSeconds,
          },
        },
      ),
      { "retry-after": String(admitted.retryAfterSeconds) },
    );
  }
  const ticket = admitted?.allow ? admitted.ticket : undefined;

  // 3c. Idempotency: while an identical request's payment is in flight or indeterminate, this
  //     one does not pay again.
  const paid = { paymentId: randomUUID(), price: decision.price };
  const identity = ctx.resilience.idempotency
    ? requestIdentity({
        client: record.client,
        method,
        url: target.url.toString(),
        body: Buffer.concat([stokaHeaders(prepared.headers), body]),
        idempotencyKey: prepared.headers["idempotency-key"] as string | string[] | undefined,
      })
    : undefined;
  if (identity && ctx.resilience.idempotency) {
    const begun = ctx.resilience.idempotency.begin(identity, paid.paymentId, ctx.now());
    if (begun.kind !== "proceed") {
      if (ticket) breaker?.recordNeutral(ticket);
      return answerConflict(ctx, res, record, begun);
    }
  }
  const finish = (
    outcome: "settled" | "rejected" | "failed" | "refused" | "indeterminate",
    reason: string,
    secondChallenge = false,
  ) => {
    if (identity) ctx.resilience.idempotency?.settle(identity, paid.paymentId, outcome, ctx.now());
    if (ticket && breaker) {
      const verdict = verdictFor({ outcome, secondChallenge });
      ctx.resilience.noteTransition(breaker.record(ticket, verdict, ctx.now(), reason));
    }
  };

  // 3d. Reserve the price in every matching budget at once (with the ledger's `reserved` row).
  record.paymentId = paid.paymentId;
  const reservation = await ctx.book.reserve(
    {
      paymentId: paid.paymentId,
      requestId: record.requestId,
      client: record.client,
      route: record.route,
      method,
      url: target.url.toString(),
      amount: paid.price,
      payTo: requirement.payTo,
      asset: requirement.asset,
      network: requirement.network,
      // Which wallet pays: reconcile compares each wallet's rows with that wallet's usage.
      payer: decision.signer.address ?? null,
    },
    decision.budgets,
  );
  const reserved = afterReservation(reservation, paid.price);
  if (reserved.kind === "refuse") {
    finish("refused", reserved.reason);
    return refuse(reserved);
  }
  // 3e. A person's approval, when a budget asks for one: the reservation holds while it waits.
  const held = await holdForApproval(ctx, {
    price: paid.price,
    budgets: decision.budgets,
    record,
    target,
    method,
    res,
    // A repeat sent while it waits (past the in-flight TTL) must still be a repeat.
    onWait: (deadlineMs) => {
      if (identity) ctx.resilience.idempotency?.holdUntil(identity, paid.paymentId, deadlineMs);
    },
  });
  if (held) {
    await reserved.payment.close(held.close);
    finish("refused", held.refusal.reason);
    return refuse(held.refusal);
  }

  // 4. Sign, check and send the paid retry once (the same header again only after a 429 or a
  //    503 with Retry-After, within the payment's validity); 5. settle what came back.
  const offer = offerFor(decision.challenge, requirement);
  let settlement: Settlement;
  let retry: PaidRetry;
  try {
    retry = await payOnce(ctx, decision.signer, offer, {
      payment: reserved.payment,
      challenge: decision.challenge,
      request: { url: target.url, method, headers, body },
      record,
      maxTimeoutSeconds: requirement.maxTimeoutSeconds,
      gone: () => clientGone(res),
      signContext: signContextFor(paid.paymentId, record, method, target, first, challengeBody),
    });
    settlement = settleAcrossSends(retry, paid);
  } catch (e) {
    // A bug past the reservation: the payment may have been sent; it stays counted.
    finish("indeterminate", (e as Error).message);
    throw e;
  }
  // Refused: whatever the signer prepared ahead for this kind of payment may be stale (prepare-cache.ts).
  if (settlement.record.outcome === "rejected") decision.signer.forgetPrepared?.(offer);
  // The signer role refused (its budgets, its terms): nothing was signed, the app gets a 402 it
  // can read, like the proxy's own refusals (docs/security.md, Keyless sidecars).
  const signerRefusal = refusedBySigner(retry.attempt);
  if (signerRefusal) {
    await reserved.payment.close(settlement.ledger);
    finish("refused", signerRefusal.reason);
    return refuse(signerRefusal);
  }
  Object.assign(record, settlement.record);
  await reserved.payment.close(settlement.ledger);
  // A remote signer closes its own row too; the app's answer does not wait for it.
  void decision.signer.reportOutcome?.(paid.paymentId, {
    state: settlement.ledger.state,
    tx: settlement.ledger.tx,
    status: settlement.ledger.status,
    reason: settlement.ledger.reason,
  });
  const second = retry.attempt.kind === "response" && retry.attempt.secondChallenge !== undefined;
  // Quote-ahead learns from the normal path and stands down after a refused quote.
  if (quoted && second) ctx.quotes.refused(quoteRequest);
  else if (!quoted && settlement.ledger.state === "settled")
    ctx.quotes.learn(quoteRequest, decision.challenge, requirement.raw);
  if (retry.response)
    ctx.quotes.answered(quoteRequest, retry.response.statusCode ?? 0, retry.response.headers);
  // A quoted payment's 402 is the proxy's own price gone stale, not the host failing payments:
  // neutral for the breaker (the route takes the normal path after it anyway).
  finish(outcomeOf(settlement), settlement.ledger.reason ?? settlement.ledger.state, second && !quoted);
  return answer(res, settlement, retry, ctx.via);
}

/** What a remote signer is told about the request it is asked to pay (wallet/payment-signer.ts). */
function signContextFor(
  paymentId: string,
  record: RequestRecord,
  method: string,
  target: PaidTarget,
  first: UpstreamAnswer | undefined,
  challengeBody: Buffer,
): SignContext {
  const required = first?.headers["payment-required"];
  const paymentRequired = Array.isArray(required) ? required[0] : required;
  return {
    paymentId,
    requestId: record.requestId,
    method,
    host: target.host.host,
    // The entry's own port, else the port the request goes to (gateway mode: the upstream's).
    port: target.host.port ?? Number(target.url.port || (target.url.protocol === "https:" ? 443 : 80)),
    url: target.url.toString(),
    challenge: {
      ...(paymentRequired !== undefined ? { paymentRequired } : {}),
      body: challengeBody.toString("utf8"),
    },
  };
}

/** A signing failure that is the signer role's refusal, as the refusal the app gets. */
function refusedBySigner(attempt: PaidAttempt): Refusal | undefined {
  if (attempt.kind !== "sign_failed") return undefined;
  const e = attempt.error;
  if (!(e instanceof StokaProxyError) || e.code !== "signer_refused") return undefined;
  return { kind: "refuse", code: "signer_refused", reason: e.message, extra: { ...e.details } };
}

/**
 * stoka names what a request acts on in headers too (X-Stoka-Key, X-Stoka-TTL-Seconds): two
 * stores of the same bytes under different keys are different requests. Those headers, sorted,
 * go into the fingerprint with the body.
 */
function stokaHeaders(headers: OutgoingHttpHeaders): Buffer {
  const lines = Object.entries(headers)
    .filter(([k]) => k.toLowerCase().startsWith("x-stoka-") && k.toLowerCase() !== "x-stoka-owner")
    .map(([k, v]) => `${k.toLowerCase()}:${Array.isArray(v) ? v.join(",") : String(v)}`)
    .sort();
  return Buffer.from(`${lines.join("\n")}\n\n`);
}

function outcomeOf(s: Settlement): "settled" | "rejected" | "failed" | "indeterminate" {
  return s.ledger.state;
}

/** 409 (in flight or indeterminate), 422 (a key reused for another request), 503 (registry full). */
function answerConflict(
  ctx: ProxyContext,
  res: ServerResponse,
  record: RequestRecord,
  begun: Exclude<
    ReturnType<NonNullable<ProxyContext["resilience"]["idempotency"]>["begin"]>,
    { kind: "proceed" }
  >,
): void {
  const state = begun.kind === "conflict" ? begun.state : begun.kind;
  ctx.resilience.metrics?.idempotencyConflicts.inc({ state });
  record.outcome = "refused";
  if (begun.kind === "full") {
    record.errorCode = "payments_in_flight_full";
    return sendError(
      res,
      new StokaProxyError(
        "payments_in_flight_full",
        "too many payments are in flight or indeterminate to tell repeats apart; nothing was paid",
        "retry later, or run `stoka-proxy reconcile` to resolve indeterminate payments",
      ),
      { "retry-after": "5" },
    );
  }
  if (begun.kind === "mismatch") {
    record.errorCode = "idempotency_key_reused";
    return sendError(
      res,
      new StokaProxyError(
        "idempotency_key_reused",
        "this Idempotency-Key was used for a different request whose payment is still open; nothing was paid",
        "use a new Idempotency-Key for a new request",
        { details: { payment_id: begun.paymentId } },
      ),
    );
  }
  record.errorCode = "payment_in_flight";
  const what =
    begun.state === "in_flight"
      ? "an identical request is being paid right now"
      : "an identical request's payment has an unknown outcome";
  return sendError(
    res,
    new StokaProxyError(
      "payment_in_flight",
      `${what}; this one was not paid (payment ${begun.paymentId})`,
      begun.state === "in_flight"
        ? "wait for the first request's answer, then retry if needed"
        : "check the object (or GET /v1/me/usage) first, or run `stoka-proxy reconcile`; nothing is paid twice",
      { details: { payment_id: begun.paymentId, payment_state: begun.state } },
    ),
    { "x-stoka-proxy-payment-state": begun.state, "x-stoka-proxy-payment-id": begun.paymentId },
  );
}

/**
 * The settlement of the last send. After resends, an earlier 503 may have been charged (the
 * server can fail after settling): then only a success is certain, anything else stays
 * indeterminate (paid-resend.ts, outcomeAcrossSends).
 */
function settleAcrossSends(retry: PaidRetry, paid: { paymentId: string; price: bigint }): Settlement {
  const s = settle(retry.attempt, paid);
  const earlier5xx = retry.earlier.find((a) => a.status >= 500);
  if (!earlier5xx || s.ledger.state === "settled" || s.ledger.state === "indeterminate") return s;
  const unsure = settle({ kind: "response", status: earlier5xx.status, receipt: undefined }, paid);
  return {
    ...unsure,
    ledger: {
      ...unsure.ledger,
      reason: `an earlier send of the same header was answered ${earlier5xx.status} and may have been charged; the last answer was ${s.ledger.status ?? s.ledger.reason ?? "none"}`,
    },
  };
}

interface UpstreamRequest {
  url: URL;
  method: string;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

/** What the paid retry came to, and its answer when there was one. */
interface PaidRetry {
  attempt: PaidAttempt;
  response?: UpstreamAnswer;
  /** Answers that led to a resend of the same header (429s, 503s with Retry-After). */
  earlier: SentAnswer[];
}

/** An answer that led to a resend, and the ledger's reason for that resend. */
type SentAnswer = PaidAnswer & { reason: string };

function send(
  ctx: ProxyContext,
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  body: Buffer,
  beforeWrite?: () => void | Promise<void>,
): Promise<UpstreamAnswer> {
  return ctx.upstream.send({
    url,
    method,
    headers,
    body: body.length > 0 ? body : undefined,
    ...(beforeWrite ? { fresh: true, beforeWrite } : {}),
  });
}

/**
 * Signs (the signer echoes the requirement, and the challenge's resource/extensions,
 * verbatim), checks the header against the offer, and sends the request again with it on a
 * fresh connection: a stale pooled socket must not turn an unsent payment into an unknown one.
 * The ledger's `sent` row is written once that connection is open and before its first byte
 * (upstream-client.ts, beforeWrite): a crash before it provably sent nothing.
 *
 * Never a new payment: a 429 (or a 503 with Retry-After) to the paid retry may only have the
 * SAME header sent again after the wait, within maxTimeoutSeconds and the signature's
 * expiration (paid-resend.ts); each resend writes its own `sent` row saying so.
 */
async function payOnce(
  ctx: ProxyContext,
  signer: PaymentSigner,
  offer: PaymentOffer,
  p: {
    payment: OpenPayment;
    challenge: Challenge;
    request: UpstreamRequest;
    record: RequestRecord;
    maxTimeoutSeconds: number;
    gone: () => boolean;
    signContext: SignContext;
  },
): Promise<PaidRetry> {
  const earlier: SentAnswer[] = [];
  // An app that left gets nothing signed or sent (settled as failed before sending: released).
  if (p.gone())
    return { attempt: { kind: "sign_failed", error: clientGoneError("before signing") }, earlier };
  let header: string;
  let txHash: string;
  let expirationLedger: number;
  const signedAtMs = ctx.now();
  try {
    const started = process.hrtime.bigint();
    try {
      header = await signer.sign(offer, p.signContext);
    } finally {
      p.record.signingSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    }
    const check = checkPayment(header, offer, NETWORKS[ctx.config.network].passphrase);
    if (!check.ok) return { attempt: { kind: "signer_mismatch", reason: check.reason }, earlier };
    txHash = check.txHash;
    expirationLedger = check.expirationLedger;
  } catch (error) {
    return { attempt: { kind: "sign_failed", error }, earlier };
  }
  if (p.gone())
    return {
      attempt: { kind: "sign_failed", error: clientGoneError("while the payment was signed") },
      earlier,
    };

  const { url, method, headers, body } = p.request;
  const withPayment = { ...headers, [p.challenge.paymentHeader]: header };
  const policy = ctx.resilience.options.resend;
  const closeSeconds = ctx.config.wallet.ledgerCloseSeconds;
  // Bounded: one send plus at most policy.maxResends resends (decideResend counts them).
  for (let sends = 0; sends <= policy.maxResends; sends++) {
    const resendReason = sends === 0 ? null : (earlier[earlier.length - 1]?.reason ?? null);
    let response: UpstreamAnswer;
    try {
      // Recorded as the connection opens, before the first byte: from here on, money may move.
      const handedToSocket = () => p.payment.sent(txHash, resendReason);
      response = await timedSend(p.record, () => send(ctx, url, method, withPayment, body, handedToSocket));
    } catch (e) {
      const kind = e instanceof UpstreamError ? e.kind : "dropped";
      // A resend that never connected: that copy was not sent, but an earlier one was.
      if (sends > 0 && kind === "connect") {
        const last = earlier[earlier.length - 1];
        return {
          attempt: last && last.status < 500 ? { kind: "not_sent" } : unanswered("dropped"),
          earlier,
        };
      }
      return { attempt: unanswered(kind), earlier };
    }
    const status = response.statusCode ?? 0;
    const receipt = receiptHeader(response.headers);
    ctx.resilience.observe(url.host, status, response.headers["retry-after"]);
    if ((status === 429 || status === 503) && receipt === undefined) {
      const retryAfter = response.headers["retry-after"];
      const decision = decideResend(policy, {
        answer: { status, ...(retryAfter !== undefined ? { retryAfter } : {}) },
        nowMs: ctx.now(),
        signedAtMs,
        maxTimeoutSeconds: p.maxTimeoutSeconds,
        // Where the expiration falls in time: the signer sets it at most maxTimeoutSeconds
        // ahead of the ledger it signed on. A later estimate than the truth is harmless: an
        // expired authorization cannot move money, the resend then meets a second 402.
        signature: {
          expirationLedger,
          referenceLedger: expirationLedger - Math.ceil(p.maxTimeoutSeconds / closeSeconds),
          referenceAtMs: signedAtMs,
          ledgerCloseSeconds: closeSeconds,
        },
        resendsMade: sends,
        random: Math.random,
      });
      if (decision.resend) {
        response.resume();
        await ctx.resilience.sleep(decision.waitMs, () => false);
        earlier.push({
          status,
          ...(retryAfter !== undefined ? { retryAfter } : {}),
          reason: decision.ledgerReason,
        });
        // An app that left during the wait gets no resend: it would pay for an answer nobody reads.
        if (p.gone())
          return { attempt: status < 500 ? { kind: "not_sent" } : unanswered("dropped"), earlier };
        ctx.resilience.metrics?.resends.inc({ route: p.record.route, status: String(status) });
        ctx.logger.info(
          {
            request_id: p.record.requestId,
            payment_id: p.payment.base.paymentId,
            status,
            wait_ms: decision.waitMs,
          },
          "paid retry throttled: resending the same payment header",
        );
        continue;
      }
    }
    // A second 402 is handed on whole, with the reason read from it; other answers stream.
    let secondChallenge: { headers: IncomingHttpHeaders; body: Buffer } | undefined;
    if (isSecondChallenge(status, receipt)) {
      try {
        const second = await readDecodedBody(response, MAX_CHALLENGE_BYTES);
        // Handed on decoded (or empty when it could not be read), so without its coding.
        secondChallenge = {
          headers: { ...response.headers, "content-encoding": undefined },
          body: second.ok ? second.body : Buffer.alloc(0),
        };
      } catch (e) {
        // Cut before the whole answer arrived: the outcome of the sent payment is unknown.
        return {
          attempt: unanswered(e instanceof UpstreamError && e.kind === "timeout" ? "timeout" : "dropped"),
          earlier,
        };
      }
    }
    return {
      attempt: { kind: "response", status, receipt, ...(secondChallenge ? { secondChallenge } : {}) },
      response,
      earlier,
    };
  }
  // Not reached: the last pass returns (decideResend refuses past maxResends).
  return { attempt: unanswered("dropped"), earlier };
}

/** Writes what the settlement says the app gets. */
function answer(res: ServerResponse, s: Settlement, retry: PaidRetry, via: string): void {
  const a = s.answer;
  switch (a.kind) {
    case "upstream":
      // settle answers `upstream` only for a response.
      return pipeUpstream(retry.response as UpstreamAnswer, res, a.headers, via);
    case "refusal": {
      const second = retry.attempt.kind === "response" ? retry.attempt.secondChallenge : undefined;
      const { headers = {}, body = Buffer.alloc(0) } = second ?? {};
      return sendRefusal(res, { status: 402, headers, body }, a.code, via);
    }
    case "error":
      retry.response?.resume();
      return sendError(res, a.error);
  }
}
