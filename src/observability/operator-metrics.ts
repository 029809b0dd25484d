import { Counter } from "prom-client";
import type { Registry } from "prom-client";
import { EVENT_NAMES } from "../operator/notify/events.js";
import type { NotifierObserver } from "../operator/notify/notifier.js";
import { SECURITY_EVENT_CODES } from "../operator/security/codes.js";
import type { SecurityRecorderObserver } from "../operator/security/recorder.js";

/**
 * Counters for the operator's side channels (docs/metrics.md): security events and webhook
 * notifications. Labels are bounded: security codes and event names are enums, destinations
 * are configured names (never URLs).
 */
export class OperatorMetrics {
  readonly securityEvents: Counter<"code">;
  readonly securityEventsDropped: Counter<"reason">;
  readonly notificationsDelivered: Counter<"destination" | "event">;
  readonly notificationsFailed: Counter<"destination" | "event" | "reason">;
  readonly notificationsDropped: Counter<"reason">;

  constructor(registry: Registry, destinations: readonly string[]) {
    const registers = [registry];
    this.securityEvents = new Counter({
      name: "stoka_proxy_security_events_total",
      help: "Security events (refused terms, 407/401, egress denials, admin 401s) by code, stored or not.",
      labelNames: ["code"],
      registers,
    });
    this.securityEventsDropped = new Counter({
      name: "stoka_proxy_security_events_dropped_total",
      help: "Security events counted but not stored: rate_limited, buffer_full, store_failed, closed.",
      labelNames: ["reason"],
      registers,
    });
    this.notificationsDelivered = new Counter({
      name: "stoka_proxy_notifications_delivered_total",
      help: "Webhook notifications a destination accepted (2xx).",
      labelNames: ["destination", "event"],
      registers,
    });
    this.notificationsFailed = new Counter({
      name: "stoka_proxy_notifications_failed_total",
      help: "Webhook notifications given up on: rejected (4xx), exhausted (retries), shutdown.",
      labelNames: ["destination", "event", "reason"],
      registers,
    });
    this.notificationsDropped = new Counter({
      name: "stoka_proxy_notifications_dropped_total",
      help: "Webhook notifications dropped before delivery: queue_full, closed, shutdown.",
      labelNames: ["reason"],
      registers,
    });
    for (const code of SECURITY_EVENT_CODES) this.securityEvents.inc({ code }, 0);
    for (const reason of ["rate_limited", "buffer_full", "store_failed", "closed"])
      this.securityEventsDropped.inc({ reason }, 0);
    for (const reason of ["queue_full", "closed", "shutdown"]) this.notificationsDropped.inc({ reason }, 0);
    for (const destination of destinations)
      for (const event of EVENT_NAMES) this.notificationsDelivered.inc({ destination, event }, 0);
  }

  notifierObserver(): NotifierObserver {
    return {
      delivered: (destination, event) => this.notificationsDelivered.inc({ destination, event }),
      failed: (destination, event, reason) => this.notificationsFailed.inc({ destination, event, reason }),
      dropped: (_destination, _event, reason) => this.notificationsDropped.inc({ reason }),
    };
  }

  securityObserver(): Pick<SecurityRecorderObserver, "seen" | "dropped"> {
    return {
      seen: (code) => this.securityEvents.inc({ code }),
      dropped: (_code, reason) => this.securityEventsDropped.inc({ reason }),
    };
  }
}
