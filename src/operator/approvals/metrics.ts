import { Counter, Gauge } from "prom-client";
import type { Registry } from "prom-client";
import { APPROVAL_OUTCOMES } from "./registry.js";
import type { ApprovalObserver } from "./registry.js";

/**
 * Approvals on /metrics (docs/metrics.md): how many payments wait for a person now, and how
 * the waits ended. The outcome label is an enum; ids, routes and clients stay out of labels.
 */
export function approvalMetrics(registry: Registry): ApprovalObserver {
  const registers = [registry];
  const pending = new Gauge({
    name: "stoka_proxy_approvals_pending",
    help: "Payments waiting for a person's approval in this process.",
    registers,
  });
  const decisions = new Counter({
    name: "stoka_proxy_approval_decisions_total",
    help: "Approval waits by how they ended: approved, denied, timeout, client_gone, cancelled.",
    labelNames: ["outcome"],
    registers,
  });
  for (const outcome of APPROVAL_OUTCOMES) decisions.inc({ outcome }, 0);
  return {
    pending: (n) => pending.set(n),
    decided: (_p, d) => decisions.inc({ outcome: d.outcome }),
  };
}
