import { bucketStart, periodLabel } from "../budget/budget.js";
import type { ProxyConfig } from "../config/config.js";
import { paymentIndeterminateEvent, paymentRefusedTermsEvent } from "../operator/notify/events.js";
import type { NotificationEvent, RefusedTerm } from "../operator/notify/events.js";
import type { Notifier } from "../operator/notify/notifier.js";
import { watchedThresholds } from "../operator/notify/rules.js";
import { ThresholdWatcher } from "../operator/notify/thresholds.js";
import { isSecurityEventCode, securityEvent } from "../operator/security/codes.js";
import type { SecurityEventCode } from "../operator/security/codes.js";
import type { EventStore } from "../operator/security/event-store.js";
import { SecurityEventRecorder } from "../operator/security/recorder.js";
import type { SecurityRecorderOptions } from "../operator/security/recorder.js";
import type { Logger } from "./logger.js";
import type { OperatorMetrics } from "./operator-metrics.js";
import type { RequestRecord } from "./request-record.js";
import type { StatusReads } from "./status-source.js";

/**
 * What the proxy tells its operator besides logs and metrics: webhook notifications
 * (operator/notify) and security events (operator/security). Everything here runs after the
 * answer: `requestFinished` is called once a response is done, `emit` and `securityEvent` are
 * synchronous and O(1) (a bounded queue, a bounded buffer), and the reads they need (budget
 * use, a payment's row) run later, one at a time. Nothing here can fail a request.
 *
 *   finished request ──▶ security code? ──▶ recorder (batched, capped) ──▶ security_events
 *                    ├─▶ terms_rejected  ──▶ emit(payment.refused_terms)
 *                    ├─▶ indeterminate   ──▶ (ledger read) emit(payment.indeterminate)
 *                    └─▶ a payment       ──▶ (budget reads, coalesced) emit(budget.threshold)
 *   emit(event) ──▶ notifier (rules, dedup, per-destination bounded queues, signed POSTs)
 */
export interface OperatorEventsOptions {
  config: ProxyConfig;
  logger: Logger;
  now: () => number;
  reads: StatusReads;
  events: EventStore;
  notifier?: Notifier | undefined;
  metrics?: OperatorMetrics | undefined;
  recorder?: Omit<SecurityRecorderOptions, "observer" | "now">;
}

const REFUSED_TERMS: ReadonlySet<string> = new Set([
  "pay_to",
  "asset",
  "network",
  "scheme",
  "fees",
  "timeout",
]);

/** Bounds the payments waiting for their indeterminate notification. */
const MAX_PENDING_INDETERMINATE = 1_000;

export class OperatorEvents {
  readonly recorder: SecurityEventRecorder;
  private readonly watcher: ThresholdWatcher | undefined;
  private budgetCheck: { running: boolean; again: boolean } = { running: false, again: false };
  private readonly pendingIndeterminate = new Set<string>();
  private indeterminateRunning = false;
  private work = new Set<Promise<void>>();

  constructor(private readonly o: OperatorEventsOptions) {
    const { logger } = o;
    this.recorder = new SecurityEventRecorder(o.events, {
      ...o.recorder,
      now: o.now,
      observer: {
        ...o.metrics?.securityObserver(),
        storeFailed: (error, events) =>
          logger.warn({ err: (error as Error).message, events }, "security events could not be stored"),
      },
    });
    const thresholds = o.notifier ? watchedThresholds(o.notifier.config.rules) : [];
    this.watcher = thresholds.length > 0 ? new ThresholdWatcher(thresholds) : undefined;
  }

  /** Hands an event to the notifier (breakers and the kill switch call this too). Never throws. */
  emit(event: NotificationEvent): void {
    this.o.notifier?.notify(event);
  }

  /** Records one security event. Synchronous, bounded, never throws. */
  securityEvent(
    code: SecurityEventCode,
    facts: { client?: string; host?: string; route?: string; detail?: string },
  ): void {
    this.recorder.record(securityEvent(code, this.o.now(), facts));
  }

  /** Everything a finished request tells the operator. `errorCode`: the answer's X-Stoka-Proxy-Error. */
  requestFinished(record: RequestRecord, status: number, errorCode: string | undefined): void {
    try {
      const code = errorCode ?? record.errorCode;
      if (isSecurityEventCode(code)) {
        this.securityEvent(code, {
          client: record.client,
          host: record.host,
          route: record.route,
          detail: record.reason ?? `answered ${status}`,
        });
        if (code === "terms_rejected") this.refusedTerms(record);
      }
      if (record.outcome === "indeterminate" && record.paymentId) this.indeterminate([record.paymentId]);
      if (record.paymentId || record.budgetDenied) this.checkBudgets();
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, "operator events failed for a request");
    }
  }

  private refusedTerms(record: RequestRecord): void {
    const t = record.refusedTerm;
    this.emit(
      paymentRefusedTermsEvent({
        host: record.host,
        route: record.route,
        client: record.client,
        term: (t && REFUSED_TERMS.has(t.term) ? t.term : "other") as RefusedTerm,
        offered: t?.offered ?? "",
        reason: (record.reason ?? "").slice(0, 500),
        price: null,
        atMs: this.o.now(),
      }),
    );
  }

  /** Payments that just turned indeterminate (a request, a lease, a restart): notified from their rows. */
  indeterminate(paymentIds: readonly string[]): void {
    if (!this.o.notifier) return;
    for (const id of paymentIds)
      if (this.pendingIndeterminate.size < MAX_PENDING_INDETERMINATE) this.pendingIndeterminate.add(id);
    if (this.indeterminateRunning || this.pendingIndeterminate.size === 0) return;
    this.indeterminateRunning = true;
    this.track(async () => {
      try {
        for (let round = 0; round < 10 && this.pendingIndeterminate.size > 0; round++) {
          const ids = new Set(this.pendingIndeterminate);
          this.pendingIndeterminate.clear();
          for (const p of await this.o.reads.latest()) {
            if (!ids.has(p.paymentId) || p.state !== "indeterminate") continue;
            this.emit(
              paymentIndeterminateEvent({
                paymentId: p.paymentId,
                route: p.route,
                client: p.client,
                amount: p.amount,
                reason: p.reason ?? "outcome unknown",
                upstreamStatus: p.upstreamStatus,
                tx: p.tx,
                atMs: p.atMs,
              }),
            );
          }
        }
      } finally {
        this.indeterminateRunning = false;
      }
    }, "indeterminate payments could not be read for notifications");
  }

  /** Reads every limit's use and emits the thresholds newly crossed; coalesced, one at a time. */
  checkBudgets(): void {
    if (!this.watcher) return;
    if (this.budgetCheck.running) {
      this.budgetCheck.again = true;
      return;
    }
    this.budgetCheck.running = true;
    const watcher = this.watcher;
    this.track(async () => {
      try {
        for (let round = 0; round < 10; round++) {
          this.budgetCheck.again = false;
          const nowMs = this.o.now();
          for (const b of this.o.config.budgets) {
            for (const l of b.limits) {
              const used = await this.o.reads.used(b, l, nowMs);
              const use = {
                budget: b.name,
                period: periodLabel(l.period),
                periodStartMs: l.period.kind === "calendar" ? bucketStart(l.period.unit, nowMs) : null,
                limit: l.amount,
                used,
              };
              for (const e of watcher.events(use, nowMs)) this.emit(e);
            }
          }
          if (!this.budgetCheck.again) break;
        }
      } finally {
        this.budgetCheck.running = false;
      }
    }, "budget use could not be read for notifications");
  }

  private track(fn: () => Promise<void>, failure: string): void {
    const p = fn().catch((e: unknown) => this.o.logger.warn({ err: (e as Error).message }, failure));
    this.work.add(p);
    void p.finally(() => this.work.delete(p));
  }

  /** Waits for the reads under way and the buffered security events (tests, shutdown). */
  async settle(): Promise<void> {
    for (let i = 0; i < 10 && this.work.size > 0; i++) await Promise.all([...this.work]);
    await this.recorder.flush();
  }

  /** Stores what is buffered, then lets the notifier flush for up to `deadlineMs`. */
  async close(deadlineMs = 5_000): Promise<void> {
    await this.settle().catch(() => undefined);
    await this.recorder.close();
    await this.o.notifier?.close(deadlineMs);
  }
}
