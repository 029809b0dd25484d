import { randomUUID } from "node:crypto";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { matchingBudgets } from "../budget/budget.js";
import { readAll } from "../http/body.js";
import { UpstreamError } from "../http/upstream-client.js";
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
import type { Refusal } from "../payment/decide.js";
import { isSecondChallenge, settle, unanswered } from "../payment/settle.js";
import type { PaidAttempt, Settlement } from "../payment/settle.js";
import { NETWORKS } from "../stellar/networks.js";
import { withOwnerQuote } from "../stoka/owner-quote.js";
import type { PaymentSigner } from "../wallet/payment-signer.js";
import { parseChallenge } from "../x402/challenge.js";
import type { Challenge } from "../x402/challenge.js";
import { receiptHeader } from "../x402/outcome.js";
import { checkPayment } from "../x402/payment-check.js";
import { offerFor } from "../x402/payment-payload.js";
import type { PaymentOffer } from "../x402/payment-payload.js";
import type { PaidTarget, ProxyContext } from "./context.js";
import { sendError, sendRefusal, timedOut, upstreamFailure } from "./error-answers.js";
import type { PreparedRequest } from "./prepare.js";
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

  // 1. The request as the app sent it; anything but a 402 goes back untouched.
  let first: IncomingMessage;
  try {
    first = await timedSend(record, () => send(ctx, target.url, method, headers, body));
  } catch (e) {
    return sendError(res, upstreamFailure(timedOut(e), "stoka", (e as Error).message, true));
  }
  if (first.statusCode !== 402) return pipeUpstream(first, res, {}, ctx.via);

  // 2. The 402, judged: readable? payees, terms, budgets, cap, signer?
  let challengeBody: Buffer;
  try {
    challengeBody = (await readAll(first, MAX_CHALLENGE_BYTES)) ?? Buffer.alloc(0);
  } catch (e) {
    // The 402 was cut or stalled: nothing to read, nothing signed.
    return sendError(res, upstreamFailure(timedOut(e), "stoka", (e as Error).message, true));
  }
  const refuse = (r: Refusal): void => {
    Object.assign(record, refusalRecord(r));
    // The body is ours now, plain JSON: the upstream's coding (gzip, …) no longer applies.
    const kept = { ...first.headers, "content-type": "application/json", "content-encoding": undefined };
    sendRefusal(res, { status: 402, headers: kept, body: refusalBody(challengeBody, r) }, r.code, ctx.via);
  };
  const read = readChallenge(parseChallenge(first.headers, challengeBody.toString("utf8")));
  if (read.kind === "refuse") return refuse(read);
  const host = target.host.host;
  const decision = decide({
    challenge: read.challenge,
    host,
    payees: await ctx.payees.allowed(target.host),
    terms: { network: ctx.config.network, asset: ctx.config.asset, ...ctx.config.terms },
    budgets: matchingBudgets(ctx.config.budgets, {
      host,
      method,
      path: target.url.pathname,
      route: record.route,
      client: record.client,
    }),
    signer: ctx.signer,
  });
  if (decision.kind === "refuse") return refuse(decision);

  // 3. Reserve the price in every matching budget at once (with the ledger's `reserved` row).
  const paid = { paymentId: randomUUID(), price: decision.price };
  record.paymentId = paid.paymentId;
  const { requirement } = decision;
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
    },
    decision.budgets,
  );
  const reserved = afterReservation(reservation, paid.price);
  if (reserved.kind === "refuse") return refuse(reserved);

  // 4. Sign, check and send the paid retry once; 5. settle what came back.
  const offer = offerFor(decision.challenge, requirement);
  const retry = await payOnce(ctx, decision.signer, offer, {
    payment: reserved.payment,
    challenge: decision.challenge,
    request: { url: target.url, method, headers, body },
    record,
  });
  const settlement = settle(retry.attempt, paid);
  // Refused: whatever the signer prepared ahead for this kind of payment may be stale (prepare-cache.ts).
  if (settlement.record.outcome === "rejected") decision.signer.forgetPrepared?.(offer);
  Object.assign(record, settlement.record);
  await reserved.payment.close(settlement.ledger);
  return answer(res, settlement, retry, ctx.via);
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
  response?: IncomingMessage;
}

function send(
  ctx: ProxyContext,
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  body: Buffer,
  fresh = false,
): Promise<IncomingMessage> {
  return ctx.upstream.send({ url, method, headers, body: body.length > 0 ? body : undefined, fresh });
}

/**
 * Signs (the signer echoes the requirement, and the challenge's resource/extensions,
 * verbatim), checks the header against the offer, records it as sent, and sends the request
 * again with it, once, on a fresh connection: a stale pooled socket must not turn an unsent
 * payment into an unknown one.
 */
async function payOnce(
  ctx: ProxyContext,
  signer: PaymentSigner,
  offer: PaymentOffer,
  p: { payment: OpenPayment; challenge: Challenge; request: UpstreamRequest; record: RequestRecord },
): Promise<PaidRetry> {
  let header: string;
  let txHash: string;
  try {
    const started = process.hrtime.bigint();
    try {
      header = await signer.sign(offer);
    } finally {
      p.record.signingSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    }
    const check = checkPayment(header, offer, NETWORKS[ctx.config.network].passphrase);
    if (!check.ok) return { attempt: { kind: "signer_mismatch", reason: check.reason } };
    txHash = check.txHash;
  } catch (error) {
    return { attempt: { kind: "sign_failed", error } };
  }

  // Recorded before sending: from here on, money may move.
  p.payment.sent(txHash);
  const { url, method, headers, body } = p.request;
  let response: IncomingMessage;
  try {
    const withPayment = { ...headers, [p.challenge.paymentHeader]: header };
    response = await timedSend(p.record, () => send(ctx, url, method, withPayment, body, true));
  } catch (e) {
    return { attempt: unanswered(e instanceof UpstreamError ? e.kind : "dropped") };
  }
  const status = response.statusCode ?? 0;
  const receipt = receiptHeader(response.headers);
  // A second 402 is handed on whole, with the reason read from it; other answers stream.
  let secondChallenge: { headers: IncomingMessage["headers"]; body: Buffer } | undefined;
  if (isSecondChallenge(status, receipt)) {
    try {
      secondChallenge = {
        headers: response.headers,
        body: (await readAll(response, MAX_CHALLENGE_BYTES)) ?? Buffer.alloc(0),
      };
    } catch (e) {
      // Cut before the whole answer arrived: the outcome of the sent payment is unknown.
      return {
        attempt: unanswered(e instanceof UpstreamError && e.kind === "timeout" ? "timeout" : "dropped"),
      };
    }
  }
  return {
    attempt: { kind: "response", status, receipt, ...(secondChallenge ? { secondChallenge } : {}) },
    response,
  };
}

/** Writes what the settlement says the app gets. */
function answer(res: ServerResponse, s: Settlement, retry: PaidRetry, via: string): void {
  const a = s.answer;
  switch (a.kind) {
    case "upstream":
      // settle answers `upstream` only for a response.
      return pipeUpstream(retry.response as IncomingMessage, res, a.headers, via);
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
