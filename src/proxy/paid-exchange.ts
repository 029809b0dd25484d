import { randomUUID } from "node:crypto";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { PreparedRequest } from "./prepare.js";
import { matchingBudgets, perRequestCap } from "../budget/budget.js";
import type { PaidHost } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import type { ErrorCode } from "../errors.js";
import { NETWORKS } from "../stellar/networks.js";
import { readBoundedJson } from "../parsing/bounded-json.js";
import { parseChallenge } from "../x402/challenge.js";
import { classifyRetry } from "../x402/outcome.js";
import type { RetryResult } from "../x402/outcome.js";
import { checkPayment } from "../x402/payment-check.js";
import { offerFor } from "../x402/payment-payload.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import { selectRequirement } from "../x402/terms.js";
import { readAll } from "./body.js";
import type { ProxyContext, RequestRecord } from "./context.js";
import { pipeUpstream, sendBuffered, sendError } from "./respond.js";
import { UpstreamError } from "./upstream.js";
import type { UpstreamClient } from "./upstream.js";

/**
 * A request to a paid host: forward → 402 → parse → select (pinned terms) → reserve (budgets)
 * → sign → retry once → outcome (design.md §2).
 *
 *   app ──req──▶ proxy ──req──▶ stoka ──402──▶ proxy: terms? budget? signer?
 *                  │  no ─▶ 402 + X-Stoka-Proxy-Error (nothing signed, nothing reserved)
 *                  └─ yes ─▶ reserve ─▶ sign ─▶ req + X-PAYMENT ──▶ stoka
 *                                  2xx (receipt) ─▶ settled, spent      ─▶ app (+ X-Stoka-Proxy-Paid/Tx)
 *                                  402 / 4xx     ─▶ rejected, released  ─▶ app (the upstream answer)
 *                                  5xx / timeout / dropped ─▶ indeterminate, stays spent ─▶ 502/504 JSON
 *
 * At most one payment per inbound request: this function signs at most once and never loops.
 */
const MAX_CHALLENGE_BYTES = 256 * 1024;
const CHALLENGE_JSON_LIMITS = { maxBytes: MAX_CHALLENGE_BYTES, maxDepth: 32 };

export interface PaidTarget {
  host: PaidHost;
  /** Full upstream URL for this request. */
  url: URL;
}

function upstreamFailure(e: unknown): StokaProxyError {
  if (e instanceof UpstreamError && e.kind === "timeout") {
    return new StokaProxyError(
      "upstream_timeout",
      `stoka did not answer in time: ${e.message}`,
      "retry later; nothing was paid",
    );
  }
  return new StokaProxyError(
    "upstream_unreachable",
    `cannot reach stoka: ${(e as Error).message}`,
    "check the upstream URL and network; nothing was paid",
  );
}

/** Sends once, recording how long the headers took and what kind of failure happened. */
export async function timedSend(
  record: RequestRecord,
  send: () => Promise<IncomingMessage>,
): Promise<IncomingMessage> {
  const started = process.hrtime.bigint();
  try {
    const res = await send();
    (record.upstreamSeconds ??= []).push(Number(process.hrtime.bigint() - started) / 1e9);
    if ((res.statusCode ?? 0) >= 500) record.upstreamError = "status_5xx";
    return res;
  } catch (e) {
    if (e instanceof UpstreamError) record.upstreamError = e.kind;
    throw e;
  }
}

async function sendOnce(
  upstream: UpstreamClient,
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  body: Buffer,
  fresh = false,
) {
  return upstream.send({ url, method, headers, body: body.length > 0 ? body : undefined, fresh });
}

export async function paidExchange(
  ctx: ProxyContext,
  prepared: PreparedRequest,
  res: ServerResponse,
  target: PaidTarget,
  record: RequestRecord,
): Promise<void> {
  const { method, headers, body } = prepared;
  // Exact quotes (stoka-protocol.md): name the wallet as owner when the app did not.
  const ownerRoute = record.route === "retrieve" || record.route === "queue_pop";
  const wallet = ctx.signer?.address ?? ctx.messageSigner?.address;
  if (ownerRoute && headers["x-stoka-owner"] === undefined && wallet) headers["x-stoka-owner"] = wallet;

  let first: IncomingMessage;
  try {
    first = await timedSend(record, () => sendOnce(ctx.upstream, target.url, method, headers, body));
  } catch (e) {
    return sendError(res, upstreamFailure(e));
  }
  if (first.statusCode !== 402) return pipeUpstream(first, res, {}, ctx.via);

  let challengeBody: Buffer;
  try {
    challengeBody = (await readAll(first, MAX_CHALLENGE_BYTES)) ?? Buffer.alloc(0);
  } catch (e) {
    // The 402 was cut or stalled: nothing to read, nothing signed.
    return sendError(res, upstreamFailure(e));
  }
  const refuse = (code: ErrorCode, reason: string, extra: Record<string, unknown> = {}) => {
    record.outcome = "refused";
    record.errorCode = code;
    record.reason = reason;
    // Keep the upstream's 402 (stoka clients can still read `accepts`) and add our reason.
    // Re-read within bounds: a hostile body (too deep to serialise again, not JSON, not an
    // object) is dropped and the body becomes ours alone.
    let json: Record<string, unknown> = {};
    const kept = readBoundedJson(challengeBody.toString("utf8"), CHALLENGE_JSON_LIMITS);
    if (kept.ok && typeof kept.value === "object" && kept.value !== null && !Array.isArray(kept.value))
      json = kept.value as Record<string, unknown>;
    json.proxy = { code, reason, ...extra };
    const out = Buffer.from(JSON.stringify(json));
    sendBuffered(
      res,
      402,
      // The body is ours now, plain JSON: the upstream's coding (gzip, …) no longer applies.
      { ...first.headers, "content-type": "application/json", "content-encoding": undefined },
      out,
      { "x-stoka-proxy-error": code },
      ctx.via,
    );
  };

  const parsed = parseChallenge(first.headers, challengeBody.toString("utf8"));
  if (!parsed.ok) return refuse("challenge_unreadable", parsed.reason);
  const challenge = parsed.challenge;
  const payees = await ctx.payees.allowed(target.host);
  if (payees.length === 0) {
    return refuse(
      "payee_unknown",
      `no payee is configured for ${target.host.host} and its manifest named none`,
    );
  }
  const selection = selectRequirement(challenge.accepts, {
    network: ctx.config.network,
    asset: ctx.config.asset,
    payTo: payees,
    minTimeoutSeconds: ctx.config.terms.minTimeoutSeconds,
    maxTimeoutSeconds: ctx.config.terms.maxTimeoutSeconds,
  });
  if (!selection.ok) return refuse("terms_rejected", selection.reason);
  const price = selection.price;
  const priceJson = price.toString();
  const path = target.url.pathname;
  const budgets = matchingBudgets(ctx.config.budgets, {
    host: target.host.host,
    method,
    path,
    route: record.route,
    client: record.client,
  });
  if (budgets.length === 0) {
    return refuse("no_budget", "no budget covers this request, and nothing is paid without one", {
      price: priceJson,
    });
  }
  const cap = perRequestCap(budgets);
  if (cap && price > cap.cap) {
    return refuse(
      "price_above_cap",
      `price ${price} is above the per-request cap ${cap.cap} of budget ${cap.budget}`,
      {
        price: priceJson,
        budget: { name: cap.budget, per_request_max: cap.cap.toString() },
      },
    );
  }
  if (!ctx.signer)
    return refuse("no_signer", "no wallet is configured (STELLAR_SECRET or X_PAYMENT_CMD)", {
      price: priceJson,
    });

  const paymentId = randomUUID();
  record.paymentId = paymentId;
  let opened;
  try {
    opened = await ctx.book.open(
      {
        paymentId,
        requestId: record.requestId,
        client: record.client,
        route: record.route,
        method,
        url: target.url.toString(),
        amount: price,
        payTo: selection.requirement.payTo,
        asset: selection.requirement.asset,
        network: selection.requirement.network,
      },
      budgets,
    );
  } catch (e) {
    if (!(e instanceof BudgetStoreUnavailable)) throw e;
    return refuse("budget_unavailable", `budgets cannot be checked, so nothing is paid: ${e.message}`, {
      price: priceJson,
    });
  }
  if (!opened.ok) {
    const d = opened.denial;
    record.budgetDenied = d.budget;
    return refuse(
      "budget_exceeded",
      `budget ${d.budget} (${d.period}) allows ${d.limit}, ${d.spent} is already used, the price is ${d.price}`,
      {
        price: priceJson,
        budget: { name: d.budget, period: d.period, limit: d.limit.toString(), spent: d.spent.toString() },
      },
    );
  }
  const book = opened.payment;

  let payment: string;
  let txHash: string;
  try {
    const signStarted = process.hrtime.bigint();
    // The signer echoes the requirement (and the challenge's resource/extensions) verbatim.
    const offer = offerFor(challenge, selection.requirement);
    try {
      payment = await ctx.signer.sign(offer);
    } finally {
      record.signingSeconds = Number(process.hrtime.bigint() - signStarted) / 1e9;
    }
    const check = checkPayment(payment, offer, NETWORKS[ctx.config.network].passphrase);
    if (!check.ok) {
      throw new StokaProxyError(
        "signer_mismatch",
        `the signer's payment does not match the terms: ${check.reason}`,
        "check the external signer",
      );
    }
    txHash = check.txHash;
  } catch (e) {
    const err =
      e instanceof StokaProxyError
        ? e
        : new StokaProxyError(
            "payment_create_failed",
            `signing failed: ${(e as Error).message}`,
            "check the wallet and RPC",
          );
    await book.failed(`${err.code}: ${err.message}`);
    record.outcome = "failed";
    record.errorCode = err.code;
    return sendError(res, err);
  }

  // Recorded before sending: from here on, money may move.
  book.sent(txHash);
  let result: RetryResult;
  let retry: IncomingMessage | undefined;
  try {
    // A fresh connection: a stale pooled socket must not turn an unsent payment into an unknown one.
    retry = await timedSend(record, () =>
      sendOnce(
        ctx.upstream,
        target.url,
        method,
        { ...headers, [challenge.paymentHeader]: payment },
        body,
        true,
      ),
    );
    const receipt = retry.headers["x-payment-response"] ?? retry.headers["payment-response"];
    result = {
      kind: "response",
      status: retry.statusCode ?? 0,
      receipt: Array.isArray(receipt) ? receipt[0] : receipt,
    };
  } catch (e) {
    const kind = e instanceof UpstreamError ? e.kind : "dropped";
    result = kind === "connect" ? { kind: "not_sent" } : { kind };
  }
  const outcome = classifyRetry(result);
  const status = retry?.statusCode ?? 0;
  const unknown = async (cause: "upstream_5xx" | "timeout" | "dropped" | "unexpected_status") => {
    retry?.resume();
    await book.indeterminate(retry ? status : null, cause);
    record.outcome = "indeterminate";
    const timeout = cause === "timeout";
    const code = timeout ? "payment_indeterminate_timeout" : "payment_indeterminate";
    record.errorCode = code;
    return sendError(
      res,
      new StokaProxyError(
        code,
        `the paid request was sent but its outcome is unknown (${cause}${retry ? `, upstream status ${retry.statusCode}` : ""}); it was not retried`,
        "do not resend blindly: check the object (or GET /v1/me/usage) first; the amount stays counted as spent until reconciled",
        { details: { payment_id: paymentId, price: priceJson } },
      ),
    );
  };
  switch (outcome.outcome) {
    case "settled": {
      await book.settled(outcome.tx, status);
      record.outcome = outcome.tx ? "settled" : "settled_no_receipt";
      record.paidAtomic = priceJson;
      if (outcome.tx) record.tx = outcome.tx;
      const extra: Record<string, string> = {
        "x-stoka-proxy-paid": priceJson,
        "x-stoka-proxy-payment-id": paymentId,
      };
      if (outcome.tx) extra["x-stoka-proxy-tx"] = outcome.tx;
      return pipeUpstream(retry as IncomingMessage, res, extra, ctx.via);
    }
    case "rejected": {
      record.outcome = "rejected";
      const again = retry as IncomingMessage;
      if (!outcome.secondChallenge) {
        await book.rejected(status, `upstream answered ${status}`);
        return pipeUpstream(again, res, {}, ctx.via);
      }
      // The second 402: hand it over with its reason. Never pay again for this request.
      let text: Buffer;
      try {
        text = (await readAll(again, MAX_CHALLENGE_BYTES)) ?? Buffer.alloc(0);
      } catch (e) {
        // Cut before the whole answer arrived: the outcome of the sent payment is unknown.
        return unknown(e instanceof UpstreamError && e.kind === "timeout" ? "timeout" : "dropped");
      }
      const reason = parseChallenge(again.headers, text.toString("utf8"));
      record.errorCode = "payment_rejected";
      record.reason = reason.ok ? reason.challenge.error : undefined;
      await book.rejected(402, record.reason ?? "second 402");
      return sendBuffered(
        res,
        402,
        again.headers,
        text,
        { "x-stoka-proxy-error": "payment_rejected" },
        ctx.via,
      );
    }
    case "failed":
      await book.failed("the paid retry could not connect; nothing was sent");
      record.outcome = "failed";
      record.errorCode = "payment_not_sent";
      return sendError(
        res,
        new StokaProxyError(
          "payment_not_sent",
          "stoka could not be reached for the paid retry; nothing was sent",
          "retry the request",
          {
            details: { payment_id: paymentId },
          },
        ),
      );
    case "indeterminate":
      return unknown(outcome.cause);
  }
}
