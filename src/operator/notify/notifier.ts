import { randomUUID } from "node:crypto";
import { nextStep } from "./backoff.js";
import type { AttemptResult, RetryPolicy } from "./backoff.js";
import { Deduplicator } from "./dedup.js";
import { payloadOf } from "./events.js";
import type { EventName, NotificationEvent, Severity } from "./events.js";
import { httpTransport } from "./http-post.js";
import type { Transport } from "./http-post.js";
import { BoundedQueue } from "./queue.js";
import { destinationsFor } from "./rules.js";
import type { NotificationRule } from "./rules.js";
import { realScheduler, sleep } from "./scheduler.js";
import type { Scheduler } from "./scheduler.js";
import { SIGNATURE_HEADER, signatureHeader } from "./signature.js";

/**
 * Webhook notifications, off the request path:
 *
 *   notify(event) ──rules──▶ dedup ──▶ per-destination bounded queue ──▶ one worker each
 *   (sync, O(1),                         (full: oldest of the lowest      POST, signed; retry
 *    never throws)                        severity dropped, counted)      with backoff + jitter
 *
 * Each destination has its own queue and one delivery in flight at most, so a slow or dead
 * receiver delays only itself, and never holds more than its queue bound. `close()` stops
 * taking events, lets the workers flush until a deadline, then aborts what is left (counted).
 * Stats and the observer name destinations by their configured name, never by URL (a webhook
 * URL can itself be a credential) and never with the secret.
 */
export interface NotifierDestination {
  /** Letters, digits, `_ . -`: shown in stats and metric labels. */
  name: string;
  url: string;
  /** HMAC key; from env or a file, never from the config text. */
  secret: string;
  timeoutMs: number;
}

export interface NotifierConfig {
  destinations: readonly NotifierDestination[];
  rules: readonly NotificationRule[];
  /** Pending deliveries per destination (the one in flight not counted). */
  queueSize: number;
  dedupWindowMs: number;
  retry: RetryPolicy;
}

export type DropReason = "queue_full" | "closed" | "shutdown";
export type FailReason = "rejected" | "exhausted" | "shutdown";

/** Hooks for metrics; exceptions they throw are swallowed (counted as internal errors). */
export interface NotifierObserver {
  delivered?(destination: string, event: EventName, attempts: number): void;
  failed?(destination: string, event: EventName, reason: FailReason, attempts: number): void;
  /** `destination` is null for events refused before fan-out (after close). */
  dropped?(destination: string | null, event: EventName, reason: DropReason): void;
}

export interface NotifierOptions {
  scheduler?: Scheduler;
  /** In [0, 1): the jitter source. */
  random?: () => number;
  transport?: Transport;
  observer?: NotifierObserver;
  newId?: () => string;
}

export interface DestinationStats {
  queued: number;
  inFlight: number;
  attempts: number;
  delivered: number;
  rejected: number;
  exhausted: number;
  /** Abandoned in flight at the close deadline. */
  abortedAtShutdown: number;
  droppedQueueFull: number;
  droppedAtShutdown: number;
  /** `status 500`, `timeout`, `connection ECONNREFUSED`, … (no URL, no secret). */
  lastResult: string | null;
}

export interface NotifierStats {
  accepted: number;
  deduplicated: number;
  unmatched: number;
  droppedClosed: number;
  internalErrors: number;
  destinations: Record<string, DestinationStats>;
}

interface Delivery {
  id: string;
  event: NotificationEvent;
  body: string;
  severity: Severity;
}

export const USER_AGENT = "stoka-proxy-webhook/1";

function describe(r: AttemptResult): string {
  switch (r.kind) {
    case "status":
      return `status ${r.status}`;
    case "connection":
      return `connection ${r.code}`;
    default:
      return r.kind;
  }
}

class DestinationWorker {
  readonly queue: BoundedQueue<Delivery>;
  readonly stats: DestinationStats = {
    queued: 0,
    inFlight: 0,
    attempts: 0,
    delivered: 0,
    rejected: 0,
    exhausted: 0,
    abortedAtShutdown: 0,
    droppedQueueFull: 0,
    droppedAtShutdown: 0,
    lastResult: null,
  };
  private running = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly dest: NotifierDestination,
    private readonly n: NotifierCore,
  ) {
    this.queue = new BoundedQueue(n.config.queueSize);
  }

  enqueue(d: Delivery): void {
    const dropped = this.queue.push(d);
    if (dropped !== null) {
      this.stats.droppedQueueFull += 1;
      this.n.tell((o) => o.dropped?.(this.dest.name, dropped.event.name, "queue_full"));
    }
    this.stats.queued = this.queue.length;
    if (!this.running) {
      this.running = true;
      // Started from a microtask: the caller's stack never runs any delivery code.
      queueMicrotask(() => void this.run());
    }
  }

  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        if (this.n.abort.signal.aborted) {
          for (const d of this.queue.drain()) {
            this.stats.droppedAtShutdown += 1;
            this.n.tell((o) => o.dropped?.(this.dest.name, d.event.name, "shutdown"));
          }
          break;
        }
        const d = this.queue.shift();
        if (d === undefined) break;
        this.stats.queued = this.queue.length;
        this.stats.inFlight = 1;
        try {
          await this.deliver(d);
        } catch {
          this.n.internalError();
        } finally {
          this.stats.inFlight = 0;
        }
      }
    } finally {
      this.stats.queued = this.queue.length;
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async deliver(d: Delivery): Promise<void> {
    const { scheduler, config, transport, random, abort } = this.n;
    const first = scheduler.now();
    for (let attempt = 1; ; attempt++) {
      const t = Math.floor(scheduler.now() / 1000);
      this.stats.attempts += 1;
      const result = await transport.post({
        url: this.dest.url,
        headers: {
          "content-type": "application/json",
          "user-agent": USER_AGENT,
          "x-stoka-proxy-event": d.event.name,
          "x-stoka-proxy-delivery": d.id,
          "x-stoka-proxy-attempt": String(attempt),
          [SIGNATURE_HEADER]: signatureHeader(this.dest.secret, t, d.body),
        },
        body: d.body,
        timeoutMs: this.dest.timeoutMs,
        signal: abort.signal,
      });
      this.stats.lastResult = describe(result);
      if (result.kind === "aborted" || abort.signal.aborted) return this.fail(d, "shutdown", attempt);
      const step = nextStep({
        policy: config.retry,
        attempt,
        firstAttemptAtMs: first,
        nowMs: scheduler.now(),
        result,
        random,
      });
      switch (step.kind) {
        case "delivered":
          this.stats.delivered += 1;
          this.n.tell((o) => o.delivered?.(this.dest.name, d.event.name, attempt));
          return;
        case "rejected":
          return this.fail(d, "rejected", attempt);
        case "exhausted":
          return this.fail(d, "exhausted", attempt);
        case "retry":
          if (!(await sleep(scheduler, step.delayMs, abort.signal))) return this.fail(d, "shutdown", attempt);
      }
    }
  }

  private fail(d: Delivery, reason: FailReason, attempts: number): void {
    if (reason === "rejected") this.stats.rejected += 1;
    else if (reason === "exhausted") this.stats.exhausted += 1;
    else this.stats.abortedAtShutdown += 1;
    this.n.tell((o) => o.failed?.(this.dest.name, d.event.name, reason, attempts));
  }
}

/** What the workers share. */
interface NotifierCore {
  readonly config: NotifierConfig;
  readonly scheduler: Scheduler;
  readonly transport: Transport;
  readonly random: () => number;
  readonly abort: AbortController;
  tell(fn: (o: NotifierObserver) => void): void;
  internalError(): void;
}

export class Notifier implements NotifierCore {
  readonly scheduler: Scheduler;
  readonly transport: Transport;
  readonly random: () => number;
  readonly abort = new AbortController();
  private readonly observer: NotifierObserver;
  private readonly newId: () => string;
  private readonly dedup: Deduplicator;
  private readonly workers = new Map<string, DestinationWorker>();
  private readonly names: string[];
  private closing: Promise<NotifierStats> | null = null;
  private readonly counts = {
    accepted: 0,
    deduplicated: 0,
    unmatched: 0,
    droppedClosed: 0,
    internalErrors: 0,
  };

  constructor(
    readonly config: NotifierConfig,
    options: NotifierOptions = {},
  ) {
    this.scheduler = options.scheduler ?? realScheduler;
    this.transport = options.transport ?? httpTransport();
    this.random = options.random ?? Math.random;
    this.observer = options.observer ?? {};
    this.newId = options.newId ?? (() => `evt_${randomUUID()}`);
    this.dedup = new Deduplicator(config.dedupWindowMs);
    for (const d of config.destinations) this.workers.set(d.name, new DestinationWorker(d, this));
    this.names = config.destinations.map((d) => d.name);
  }

  /**
   * Queues `event` for every destination a rule sends it to. Synchronous, constant work for
   * a given config, and never throws: a failure here is counted, never the caller's problem.
   */
  notify(event: NotificationEvent): void {
    try {
      if (this.closing !== null) {
        this.counts.droppedClosed += 1;
        this.tell((o) => o.dropped?.(null, event.name, "closed"));
        return;
      }
      const targets = destinationsFor(this.config.rules, this.names, event);
      if (targets.length === 0) {
        this.counts.unmatched += 1;
        return;
      }
      if (this.dedup.isDuplicate(event.dedupKey, this.scheduler.now())) {
        this.counts.deduplicated += 1;
        return;
      }
      this.counts.accepted += 1;
      const id = this.newId();
      const delivery: Delivery = { id, event, body: payloadOf(id, event), severity: event.severity };
      for (const name of targets) this.workers.get(name)?.enqueue(delivery);
    } catch {
      this.counts.internalErrors += 1;
    }
  }

  stats(): NotifierStats {
    const destinations: Record<string, DestinationStats> = {};
    for (const [name, w] of this.workers) destinations[name] = { ...w.stats, queued: w.queue.length };
    return { ...this.counts, destinations };
  }

  /**
   * Stops taking events and flushes: queued deliveries keep going (retries included) until
   * every queue is empty or `deadlineMs` has passed; then in-flight requests and waits are
   * aborted and what is still queued is dropped (counted). Safe to call more than once.
   */
  close(deadlineMs = 5_000): Promise<NotifierStats> {
    this.closing ??= this.flush(deadlineMs);
    return this.closing;
  }

  private async flush(deadlineMs: number): Promise<NotifierStats> {
    const idle = Promise.all([...this.workers.values()].map((w) => w.idle()));
    let timer: { cancel(): void } | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = this.scheduler.setTimer(resolve, deadlineMs, true);
    });
    await Promise.race([idle, deadline]);
    timer?.cancel();
    this.abort.abort();
    // Workers still running see the abort at once; a worker that went idle has nothing left.
    await Promise.all([...this.workers.values()].map((w) => w.idle()));
    this.transport.close();
    return this.stats();
  }

  tell(fn: (o: NotifierObserver) => void): void {
    try {
      fn(this.observer);
    } catch {
      this.counts.internalErrors += 1;
    }
  }

  internalError(): void {
    this.counts.internalErrors += 1;
  }
}
