import { randomUUID } from "node:crypto";
import { pino } from "pino";
import { matchingBudgets } from "../budget/budget.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { viaToken } from "../http/hop-by-hop.js";
import { UpstreamClient } from "../http/upstream-client.js";
import { PaymentBook } from "../payment/book.js";
import type { OpenPayment } from "../payment/book.js";
import { afterReservation, decide } from "../payment/decide.js";
import type { RefusalCode } from "../payment/decide.js";
import { PayeeRegistry } from "../payment/payees.js";
import {
  PAY_EXIT,
  PAY_REQUEST_PREFIX,
  choosePaymentToFinish,
  payTarget,
  readPayInput,
  refusalExit,
  resourceRefusal,
} from "../payment/pay-request.js";
import type { PayFlags } from "../payment/pay-request.js";
import { settle } from "../payment/settle.js";
import type { PaidAttempt } from "../payment/settle.js";
import { openStores } from "../payment/stores.js";
import type { Stores } from "../payment/stores.js";
import { needsApproval } from "../operator/approvals/decide.js";
import { securityEvent } from "../operator/security/codes.js";
import { budgetsWithDayUse } from "../proxy/approval-gate.js";
import { cleanText } from "../resilience/payment-switch.js";
import { scrubSecrets } from "../secrets/redact.js";
import { formatUsdc } from "../stellar/amount.js";
import { NETWORKS } from "../stellar/networks.js";
import { StokaClient } from "../stoka/client.js";
import { factsOf } from "../store/payment-store.js";
import { createPaymentSigner } from "../wallet/setup.js";
import { checkPayment } from "../x402/payment-check.js";
import { offerFor } from "../x402/payment-payload.js";
import { jsonLine } from "./output.js";
import type { Out } from "./output.js";

/**
 * `stoka-proxy pay` (docs/operations.md, Paying for stoka's own clients): the X_PAYMENT_CMD of
 * stoka's clients, with the proxy's terms, budgets and ledger. The same steps as the proxy's
 * paid exchange (proxy/paid-exchange.ts), with printing in place of sending:
 *
 *   stdin ─▶ readPayInput ─▶ payTarget (paid host, route) ─▶ payees ─▶ decide
 *     refuse ─▶ exit 5/6/7/78, one line on stderr (nothing reserved, nothing signed)
 *   ─▶ reserve (ledger: reserved) ─▶ refuse ─▶ exit 6
 *   ─▶ sign ─▶ check the header ─▶ ledger: sent ─▶ still counted? ─▶ header on stdout, exit 0
 *
 * The `sent` row is committed BEFORE the header is printed: once printed it may be spent, and
 * a `sent` payment stays counted whatever happens next (a lease that runs out, a proxy restart
 * on the same store: indeterminate, never released). The payment stays open until `pay
 * --settled TX` / `--failed`, or reconciliation, decides it.
 *
 * stdout carries the header and nothing else (it is what the client sends); everything said
 * goes to stderr, one line, JSON with --json. The seed is never printed.
 */
export interface PayOptions extends PayFlags {
  client: string;
  json: boolean;
}

export interface PayIo {
  out: Out;
  err: Out;
  readStdin: () => Promise<string>;
}

/** One line on stderr: the words, or with --json the same facts as JSON. */
function say(io: PayIo, json: boolean, facts: Record<string, unknown>, text: string): void {
  io.err(json ? jsonLine(facts) : `${scrubSecrets(text)}\n`);
}

function refused(
  io: PayIo,
  json: boolean,
  r: { code: RefusalCode | "bad_request"; reason: string; extra?: Record<string, unknown> },
): number {
  say(
    io,
    json,
    { refused: true, code: r.code, reason: r.reason, ...(r.extra ?? {}) },
    `stoka-proxy pay: refused (${r.code}): ${r.reason}`,
  );
  return refusalExit(r.code);
}

/** The configuration, as the other commands load it; with --json its refusal is JSON too. */
export function loadForPay(load: () => ProxyConfig, io: PayIo, json: boolean): ProxyConfig | number {
  try {
    return load();
  } catch (e) {
    if (!(e instanceof StokaProxyError) || !json) throw e;
    say(io, true, { refused: true, code: e.code, reason: scrubSecrets(e.message), hint: e.hint }, "");
    return e.code === "config_invalid" ? PAY_EXIT.config : PAY_EXIT.other;
  }
}

const quiet = pino({ level: "silent" });

function newUpstream(config: ProxyConfig): UpstreamClient {
  return new UpstreamClient({
    timeoutMs: config.upstream.timeoutMs,
    connectTimeoutMs: config.upstream.connectTimeoutMs,
    caPems: config.upstream.caPems,
  });
}

export async function payCommand(config: ProxyConfig, o: PayOptions, io: PayIo): Promise<number> {
  const input = readPayInput(await io.readStdin());
  if (!input.ok) return refused(io, o.json, { code: "challenge_unreadable", reason: input.reason });
  const stores = openStores(config, quiet);
  // A 402 the proxy would not trust is a security event here too (`stoka-proxy events`).
  const untrusted = async (
    r: { code: RefusalCode | "bad_request"; reason: string; extra?: Record<string, unknown> },
    host = "",
    route = "",
  ): Promise<number> => {
    if (r.code === "terms_rejected")
      await stores.events
        .append([
          securityEvent("terms_rejected", Date.now(), { client: o.client, host, route, detail: r.reason }),
        ])
        .catch(() => undefined);
    return refused(io, o.json, r);
  };
  try {
    const target = payTarget(input.resources, o, {
      gateway: config.gatewayUpstream,
      paidHosts: config.paidHosts,
      walletAuthRoutes: config.walletAuth.flatMap((r) => (r.route ? [r.route] : [])),
    });
    if (!target.ok) return await untrusted(target);
    const elsewhere = resourceRefusal(input.challenge, target.host);
    if (elsewhere)
      return await untrusted({ code: "terms_rejected", reason: elsewhere }, target.host.host, target.route);

    // Only the local key signs here: X_PAYMENT_CMD may well name this very command.
    const signer = config.wallet.secret
      ? createPaymentSigner({ ...config.wallet, paymentCommand: undefined }, config.network)
      : undefined;
    const payees = new PayeeRegistry(new StokaClient(newUpstream(config), viaToken("pay")), {
      network: config.network,
      asset: config.asset,
    });
    const host = target.host.host;
    const decision = decide({
      challenge: input.challenge,
      host,
      payees: await payees.allowed(target.host),
      terms: { network: config.network, asset: config.asset, ...config.terms },
      budgets: matchingBudgets(config.budgets, {
        host,
        method: target.method,
        path: target.url.pathname,
        route: target.route,
        client: o.client,
      }),
      signer,
    });
    if (decision.kind === "refuse") return await untrusted(decision, host, target.route);
    // The switch as configured (payments.stopped / dry_run); a running proxy's flips are its own.
    if (config.payments.stopped || config.payments.dryRun) {
      const code = config.payments.stopped ? "payments_stopped" : "dry_run";
      const reason = config.payments.stopped
        ? "payments are stopped in the configuration (payments.stopped)"
        : `dry run: would have paid ${formatUsdc(decision.price)} to ${decision.requirement.payTo}; nothing was signed`;
      return refused(io, o.json, { code, reason, extra: { price: decision.price.toString() } });
    }

    const book = new PaymentBook(stores.payments, quiet, Date.now, config.leaseMs);
    // Older pay-command payments whose lease ran out turn indeterminate (still counted), so
    // reconciliation sees them even when no proxy runs on this store.
    await book.expireLeases().catch((e: unknown) => {
      if (!(e instanceof BudgetStoreUnavailable)) throw e;
    });
    const paymentId = randomUUID();
    const { requirement } = decision;
    const reservedAtMs = book.now();
    const reservation = await book.reserve(
      {
        paymentId,
        requestId: `${PAY_REQUEST_PREFIX}${randomUUID()}`,
        client: o.client,
        route: target.route,
        method: target.method,
        url: target.url.toString(),
        amount: decision.price,
        payTo: requirement.payTo,
        asset: requirement.asset,
        network: requirement.network,
      },
      decision.budgets,
    );
    const reserved = afterReservation(reservation, decision.price);
    if (reserved.kind === "refuse") return refused(io, o.json, reserved);

    // A budget that wants a person's approval for this payment: a one-shot command cannot wait
    // for one (approvals live in a running proxy), and must never skip it. Refused, released.
    if (decision.budgets.some((b) => b.approval)) {
      const need = needsApproval(
        decision.price,
        await budgetsWithDayUse(stores.payments, book.now(), decision.budgets),
      );
      if (need.kind === "needed") {
        const reason = `${need.reasons.join("; ")}: it needs a person's approval, which \`stoka-proxy pay\` cannot wait for; nothing was signed`;
        await reserved.payment.close({
          state: "failed",
          tx: null,
          status: null,
          reason: `approval_denied: ${reason}`,
          budget: "release",
        });
        return refused(io, o.json, {
          code: "approval_denied",
          reason,
          extra: { price: decision.price.toString(), budgets: need.budgets },
        });
      }
    }

    const offer = offerFor(decision.challenge, requirement);
    const failed = async (attempt: PaidAttempt): Promise<number> => {
      const s = settle(attempt, { paymentId, price: decision.price });
      await reserved.payment.close(s.ledger);
      const error = s.answer.kind === "error" ? s.answer.error : undefined;
      say(
        io,
        o.json,
        {
          refused: false,
          code: error?.code ?? "payment_create_failed",
          reason: s.ledger.reason,
          payment_id: paymentId,
        },
        `stoka-proxy pay: not paid (${error?.code ?? "failed"}): ${error?.message ?? s.ledger.reason ?? ""}; payment ${paymentId} released`,
      );
      return PAY_EXIT.other;
    };
    let header: string;
    try {
      header = (await decision.signer.sign(offer)).trim();
    } catch (error) {
      return await failed({ kind: "sign_failed", error });
    }
    const check = checkPayment(header, offer, NETWORKS[config.network].passphrase);
    if (!check.ok) return await failed({ kind: "signer_mismatch", reason: check.reason });

    await reserved.payment.sent(check.txHash, PRINTED_REASON);
    if (await releasedMeanwhile(stores, reserved.payment, reservedAtMs)) {
      // Closed for the readers (reconcile, the lease sweep): its latest row must not look open.
      await reserved.payment.close({
        state: "failed",
        tx: check.txHash,
        status: null,
        reason: RELEASED_REASON,
        budget: "release",
      });
      say(
        io,
        o.json,
        { refused: false, code: "payment_not_sent", reason: RELEASED_REASON, payment_id: paymentId },
        `stoka-proxy pay: not paid: ${RELEASED_REASON} (payment ${paymentId}); run it again`,
      );
      return PAY_EXIT.other;
    }
    io.out(`${header}\n`);
    const facts = {
      paid: true,
      paymentId,
      amount: decision.price.toString(),
      payTo: requirement.payTo,
      route: target.route,
      client: o.client,
      tx: check.txHash,
    };
    say(
      io,
      o.json,
      facts,
      `stoka-proxy pay: signed ${formatUsdc(decision.price)} to ${requirement.payTo} for route ${target.route} (client ${o.client}); payment ${paymentId} is open until \`stoka-proxy pay --settled TX --payment-id ${paymentId}\` or \`--failed\``,
    );
    return PAY_EXIT.ok;
  } catch (e) {
    if (!(e instanceof BudgetStoreUnavailable) || e instanceof StokaProxyError) throw e;
    return refused(io, o.json, {
      code: "budget_unavailable",
      reason: `the payment store cannot be used: ${e.message}`,
    });
  } finally {
    await stores.close();
  }
}

export const PRINTED_REASON = "the header was printed by `stoka-proxy pay`; the client sends it";
const RELEASED_REASON =
  "a proxy starting on this store released the reservation while it was being signed; the header was not printed";

/**
 * A proxy that starts on the same SQLite file releases every payment still `reserved` (never
 * handed to a socket, crash recovery). If that happened while this one was signed, its money
 * is no longer counted, so its header must not be printed. Its rows since the reservation say:
 * one that freed it (failed, rejected) before the `sent` row. Recovery and the `sent` row are
 * both one transaction, so either recovery saw `sent` (indeterminate: counted) or this finds it.
 */
async function releasedMeanwhile(stores: Stores, payment: OpenPayment, sinceMs: number): Promise<boolean> {
  const states: string[] = [];
  for await (const row of stores.payments.rows(sinceMs))
    if (row.paymentId === payment.base.paymentId) states.push(row.state);
  const sentAt = states.lastIndexOf("sent");
  return states.slice(0, sentAt).some((s) => s === "failed" || s === "rejected" || s === "settled");
}

export interface FinishOptions {
  settled?: string;
  failed: boolean;
  paymentId?: string;
  client: string;
  reason?: string;
  json: boolean;
}

const TX = /^[0-9a-f]{64}$/i;

/**
 * `stoka-proxy pay --settled TX` / `--failed`: the caller reports what became of a printed
 * header. Settled commits the money; failed gives it back, so it is for a header certainly not
 * accepted (never sent, or answered with another 402); when unsure, say nothing: the lease
 * turns it indeterminate and `stoka-proxy reconcile` decides. The result goes to stdout.
 */
export async function finishPayment(config: ProxyConfig, o: FinishOptions, io: PayIo): Promise<number> {
  const usage = (reason: string) => refused(io, o.json, { code: "bad_request", reason });
  if ((o.settled !== undefined) === o.failed) return usage("give exactly one of --settled TX and --failed");
  if (o.settled !== undefined && !TX.test(o.settled))
    return usage("--settled takes the transaction hash: 64 hex characters (the receipt's `transaction`)");
  const stores = openStores(config, quiet);
  try {
    const book = new PaymentBook(stores.payments, quiet, Date.now, config.leaseMs);
    const chosen = choosePaymentToFinish(await stores.payments.latest(), {
      client: o.client,
      ...(o.paymentId !== undefined ? { paymentId: o.paymentId } : {}),
    });
    if (!chosen.ok) {
      say(
        io,
        o.json,
        { refused: true, code: chosen.code, reason: chosen.reason },
        `stoka-proxy pay: ${chosen.reason}`,
      );
      return chosen.code === "bad_request" ? PAY_EXIT.usage : PAY_EXIT.other;
    }
    const p = chosen.payment;
    const state = o.settled !== undefined ? "settled" : "failed";
    // Pasted text: control characters dropped, bounded, anything secret-looking replaced.
    const said = o.reason ? `: ${cleanText(o.reason, 200)}` : "";
    const row = await book.append(
      factsOf(p),
      state,
      o.settled?.toLowerCase() ?? p.tx,
      null,
      `reported ${state === "settled" ? "charged" : "not charged"} by \`stoka-proxy pay --${state}\`${said}`,
    );
    const facts = {
      paymentId: row.paymentId,
      state,
      from: p.state,
      amount: row.amount.toString(),
      route: row.route,
      client: row.client,
      tx: row.tx,
    };
    io.out(
      o.json
        ? jsonLine(facts)
        : `payment ${row.paymentId}: ${p.state} → ${state} (${formatUsdc(row.amount)}, route ${row.route}, client ${row.client})${state === "settled" ? ", spent" : ", given back to the budgets"}\n`,
    );
    return PAY_EXIT.ok;
  } catch (e) {
    if (!(e instanceof BudgetStoreUnavailable) || e instanceof StokaProxyError) throw e;
    say(
      io,
      o.json,
      { refused: true, code: "budget_unavailable", reason: e.message },
      `stoka-proxy pay: the payment store cannot be used: ${e.message}`,
    );
    return PAY_EXIT.other;
  } finally {
    await stores.close();
  }
}

/** stdin, whole, within the bound (a larger input is cut and then refused as unreadable JSON). */
export async function readAll(stream: NodeJS.ReadableStream, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(String(c));
    size += b.length;
    if (size > maxBytes + 1) break;
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString("utf8");
}
