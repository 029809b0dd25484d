import type { Registry } from "prom-client";
import { bucketStart } from "../budget/budget.js";
import type { ProxyConfig } from "../config/config.js";
import type { AdminRoute } from "../observability/admin.js";
import type { Logger } from "../observability/logger.js";
import { OperatorEvents } from "../observability/operator-events.js";
import { OperatorMetrics } from "../observability/operator-metrics.js";
import { approvalRoutes } from "../observability/approval-routes.js";
import { statusRoutes } from "../observability/status-routes.js";
import type { ApprovalRegistry } from "../operator/approvals/registry.js";
import { StatusSource } from "../observability/status-source.js";
import type { StatusExtras, StatusReads } from "../observability/status-source.js";
import { Notifier } from "../operator/notify/notifier.js";
import type { EventStore } from "../operator/security/event-store.js";
import type { Stores } from "../payment/stores.js";

/**
 * The operator's parts of one proxy, built from its config and stores: the notifier (when
 * `notifications:` names destinations), the security event store and recorder, the status
 * page's source and its admin route. All of it reads the stores through `StatusReads`, so a
 * PaymentStore can replace today's ledger + budget store without touching this.
 */
export interface OperatorParts {
  events: OperatorEvents;
  status: StatusSource;
  store: EventStore;
  /** Other parts (breakers, the kill switch) put their state on the page through these. */
  extras: StatusExtras;
  /** The status page on the admin listener, behind the metrics token when one is set. */
  adminRoutes(): AdminRoute[];
}

export function operatorParts(o: {
  config: ProxyConfig;
  logger: Logger;
  now: () => number;
  stores: Stores;
  registry: Registry;
  caCertPath: () => string | undefined;
  events?: EventStore;
  reads?: StatusReads;
  /**
   * Payments waiting for a person, the admin token their endpoints ask for, and whether any
   * budget in use asks for approval (the page shows the panel then, or while one waits).
   */
  approvals?: { registry: ApprovalRegistry; token: () => string | undefined; configured: () => boolean };
}): OperatorParts {
  const { config, logger, approvals } = o;
  const n = config.notifications;
  const destinations = n?.destinations.map((d) => d.name) ?? [];
  const metrics = config.metricsEnabled ? new OperatorMetrics(o.registry, destinations) : undefined;
  const notifier =
    n && n.destinations.length > 0
      ? new Notifier(n, {
          observer: {
            ...metrics?.notifierObserver(),
            failed: (destination, event, reason, attempts) => {
              metrics?.notificationsFailed.inc({ destination, event, reason });
              // The destination's name only: its URL may itself be a credential.
              logger.warn({ destination, event, reason, attempts }, "webhook notification not delivered");
            },
          },
        })
      : undefined;
  // Read through the payment store, so the page shows the shared ledger with PostgreSQL.
  const reads: StatusReads = o.reads ?? {
    latest: () => o.stores.payments.latest(),
    used: (b, l, nowMs) => o.stores.budgets.used(b, l, nowMs),
    reserved: (b) => o.stores.budgets.reserved(b),
  };
  const store = o.events ?? o.stores.events;
  const events = new OperatorEvents({ config, logger, now: o.now, reads, events: store, notifier, metrics });
  const extras: StatusExtras = {
    facts: async () => {
      // UTC day and month, as the spend panels count (budget/budget.ts, bucketStart).
      const nowMs = o.now();
      const total = (counts: Partial<Record<string, number>>) =>
        String(Object.values(counts).reduce((a: number, b) => a + (b ?? 0), 0));
      const today = await store.countsByCode(bucketStart("day", nowMs));
      const month = await store.countsByCode(bucketStart("month", nowMs));
      return [
        { label: "security events today", value: total(today) },
        { label: "security events this month", value: total(month) },
      ];
    },
  };
  const status = new StatusSource({
    config,
    reads,
    caCertPath: o.caCertPath,
    now: o.now,
    extras,
  });
  return {
    events,
    status,
    store,
    extras,
    adminRoutes: () => [
      statusRoutes({
        source: status,
        token: config.metricsToken,
        onDenied: (address) =>
          events.securityEvent("admin_auth_required", {
            route: "admin",
            detail: `status page asked for without the admin token from ${address}`,
          }),
        ...(approvals
          ? {
              approvals: () => {
                const list = approvals.registry.list();
                return list.length > 0 || approvals.configured() ? list : undefined;
              },
            }
          : {}),
      }),
      ...(approvals
        ? [
            approvalRoutes({
              registry: approvals.registry,
              token: approvals.token,
              onDenied: (address) =>
                events.securityEvent("admin_auth_required", {
                  route: "admin",
                  detail: `approvals asked for without the admin token from ${address}`,
                }),
            }),
          ]
        : []),
    ],
  };
}
