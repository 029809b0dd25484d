import type { ServerResponse } from "node:http";
import type { Budget } from "../config/config.js";
import type { RequestRecord } from "../observability/request-record.js";
import { approvalRequestedEvent } from "../operator/notify/events.js";
import { dailyMarked, needsApproval } from "../operator/approvals/decide.js";
import type { ApprovalBudget } from "../operator/approvals/decide.js";
import type { ApprovalDecision } from "../operator/approvals/registry.js";
import type { Refusal } from "../payment/decide.js";
import type { LedgerClose } from "../payment/settle.js";
import { clientGone } from "./client-gone.js";
import type { PaidTarget, ProxyContext } from "./context.js";

/**
 * A person's approval between the reservation and the signature (docs/operations.md,
 * Approvals). Runs after the budgets reserved the price, so the reservation holds the money
 * while the payment waits, and before anything is signed: a payment that is not approved is
 * closed `failed` (released, nothing was signed) and answered 402 with the reason.
 *
 * Undefined: go on and sign. Otherwise: the row that releases the reservation and the refusal.
 */
export interface Held {
  close: LedgerClose;
  refusal: Refusal;
}

export async function holdForApproval(
  ctx: ProxyContext,
  p: {
    price: bigint;
    budgets: readonly Budget[];
    record: RequestRecord;
    target: PaidTarget;
    method: string;
    res: ServerResponse;
  },
): Promise<Held | undefined> {
  if (!p.budgets.some((b) => b.approval)) return undefined;
  const need = needsApproval(p.price, await withDayUse(ctx, p.budgets));
  if (need.kind === "none") return undefined;
  if (clientGone(p.res))
    return held("approval_denied", "the app left before the payment could wait", p.price);
  const { record, target } = p;
  const facts = {
    paymentId: record.paymentId ?? "",
    requestId: record.requestId,
    route: record.route,
    client: record.client,
    method: p.method,
    host: target.host.host,
    path: target.url.pathname,
    amount: p.price,
    budgets: need.budgets,
    reasons: need.reasons,
  };
  const waiting = ctx.approvals.wait(facts, need.timeoutMs, (left) => {
    p.res.once("close", left);
    return () => p.res.off("close", left);
  });
  if (!waiting)
    return held(
      "approval_denied",
      `too many payments already wait for approval (${ctx.approvals.size}); this one was not signed`,
      p.price,
    );
  const { approval } = waiting;
  ctx.emit(approvalRequestedEvent({ ...facts, approvalId: approval.id, ...approval }));
  ctx.logger.info(
    {
      request_id: record.requestId,
      payment_id: facts.paymentId,
      approval_id: approval.id,
      route: record.route,
      client: record.client,
      amount_atomic: p.price.toString(),
      budgets: need.budgets,
      deadline: new Date(approval.deadlineMs).toISOString(),
    },
    "payment waits for approval",
  );
  const d = await waiting.decision;
  ctx.logger.info(
    { request_id: record.requestId, approval_id: approval.id, outcome: d.outcome, reason: d.reason },
    "approval decided",
  );
  if (d.outcome === "approved") {
    // The kill switch may have been turned on while the payment waited: it still wins.
    if (ctx.resilience.paymentSwitch.decide().kind !== "pay")
      return held("payments_stopped", "payments were stopped while the payment waited for approval", p.price);
    return undefined;
  }
  return held(codeOf(d), `${d.reason}; nothing was signed`, p.price, approval.id);
}

function codeOf(d: ApprovalDecision): "approval_denied" | "approval_timeout" {
  return d.outcome === "timeout" ? "approval_timeout" : "approval_denied";
}

function held(
  code: "approval_denied" | "approval_timeout" | "payments_stopped",
  reason: string,
  price: bigint,
  approvalId?: string,
): Held {
  return {
    close: { state: "failed", tx: null, status: null, reason: `${code}: ${reason}`, budget: "release" },
    refusal: {
      kind: "refuse",
      code,
      reason,
      extra: { price: price.toString(), ...(approvalId ? { approval_id: approvalId } : {}) },
    },
  };
}

/** Each budget with a daily mark, with its `day` limit's use now (null when unreadable). */
async function withDayUse(ctx: ProxyContext, budgets: readonly Budget[]): Promise<ApprovalBudget[]> {
  if (!dailyMarked(budgets)) return [...budgets];
  const nowMs = ctx.now();
  const out: ApprovalBudget[] = [];
  for (const b of budgets) {
    const day = b.limits.find((l) => l.period.kind === "calendar" && l.period.unit === "day");
    if (b.approval?.dailyMark === undefined || !day) {
      out.push(b);
      continue;
    }
    const dayUsed = await ctx.book.store.used(b, day, nowMs).catch(() => null);
    out.push({ ...b, dayUsed });
  }
  return out;
}
