import type { SecurityEvent, SecurityEventCode } from "./codes.js";
import type { EventStore } from "./event-store.js";

/**
 * Takes security events from the traffic paths without slowing them: `record` is synchronous,
 * O(1) and never throws; writes happen later, in batches, one at a time.
 *
 *   record(e) ──per-code rate cap──▶ bounded buffer ──every flushMs──▶ store.append(batch)
 *               over it: dropped      full: dropped    (one in flight)   failed: dropped
 *               (rate_limited)        (buffer_full)                       (store_failed)
 *
 * Every event is counted by the observer (`seen`), stored or not, so the metric tells the
 * true number; what was not stored is counted by reason. A flood of 407s costs at most
 * `perCodePerSecond` rows a second per code, and the store keeps at most its row cap.
 */
export type SecurityDropReason = "rate_limited" | "buffer_full" | "store_failed" | "closed";

export interface SecurityRecorderObserver {
  seen?(code: SecurityEventCode): void;
  dropped?(code: SecurityEventCode, reason: SecurityDropReason): void;
  /** A batch could not be written (the caller logs it, without the events' details). */
  storeFailed?(error: unknown, events: number): void;
}

export interface SecurityRecorderOptions {
  /** Stored events per code in one wall-clock second; the rest are counted only. */
  perCodePerSecond?: number;
  /** Events waiting to be written. */
  bufferSize?: number;
  flushMs?: number;
  /** Largest batch one write carries. */
  batchSize?: number;
  now?: () => number;
  observer?: SecurityRecorderObserver;
}

export const SECURITY_RECORDER_DEFAULTS = {
  perCodePerSecond: 20,
  bufferSize: 1_000,
  flushMs: 250,
  batchSize: 500,
} as const;

export interface SecurityRecorderStats {
  seen: number;
  stored: number;
  dropped: Record<SecurityDropReason, number>;
}

export class SecurityEventRecorder {
  private readonly buffer: SecurityEvent[] = [];
  private readonly windows = new Map<SecurityEventCode, { second: number; count: number }>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | null = null;
  private closed = false;
  private readonly o: Required<Omit<SecurityRecorderOptions, "observer">>;
  private readonly observer: SecurityRecorderObserver;
  readonly stats: SecurityRecorderStats = {
    seen: 0,
    stored: 0,
    dropped: { rate_limited: 0, buffer_full: 0, store_failed: 0, closed: 0 },
  };

  constructor(
    private readonly store: EventStore,
    options: SecurityRecorderOptions = {},
  ) {
    this.o = {
      perCodePerSecond: options.perCodePerSecond ?? SECURITY_RECORDER_DEFAULTS.perCodePerSecond,
      bufferSize: options.bufferSize ?? SECURITY_RECORDER_DEFAULTS.bufferSize,
      flushMs: options.flushMs ?? SECURITY_RECORDER_DEFAULTS.flushMs,
      batchSize: options.batchSize ?? SECURITY_RECORDER_DEFAULTS.batchSize,
      now: options.now ?? Date.now,
    };
    this.observer = options.observer ?? {};
  }

  record(event: SecurityEvent): void {
    try {
      this.stats.seen += 1;
      this.tell((o) => o.seen?.(event.code));
      if (this.closed) return this.drop(event.code, "closed");
      const second = Math.floor(this.o.now() / 1000);
      const w = this.windows.get(event.code);
      if (w === undefined || w.second !== second) this.windows.set(event.code, { second, count: 1 });
      else if (w.count >= this.o.perCodePerSecond) return this.drop(event.code, "rate_limited");
      else w.count += 1;
      if (this.buffer.length >= this.o.bufferSize) return this.drop(event.code, "buffer_full");
      this.buffer.push(event);
      this.schedule();
    } catch {
      // never the caller's problem
    }
  }

  /** Writes everything buffered now (tests, shutdown); resolves when the buffer is empty. */
  async flush(): Promise<void> {
    for (let i = 0; i < 1_000 && (this.buffer.length > 0 || this.flushing); i++) {
      if (this.flushing) await this.flushing;
      else await this.writeBatch();
    }
  }

  /** Stops taking events and writes what is buffered. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.flushing) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.writeBatch();
    }, this.o.flushMs);
    this.timer.unref();
  }

  private writeBatch(): Promise<void> {
    if (this.flushing) return this.flushing;
    const batch = this.buffer.splice(0, this.o.batchSize);
    if (batch.length === 0) return Promise.resolve();
    this.flushing = (async () => {
      try {
        await this.store.append(batch);
        this.stats.stored += batch.length;
      } catch (error) {
        for (const e of batch) this.drop(e.code, "store_failed");
        this.tell((o) => o.storeFailed?.(error, batch.length));
      } finally {
        this.flushing = null;
        if (this.buffer.length > 0 && !this.closed) this.schedule();
      }
    })();
    return this.flushing;
  }

  private drop(code: SecurityEventCode, reason: SecurityDropReason): void {
    this.stats.dropped[reason] += 1;
    this.tell((o) => o.dropped?.(code, reason));
  }

  private tell(fn: (o: SecurityRecorderObserver) => void): void {
    try {
      fn(this.observer);
    } catch {
      // an observer's failure is not the recorder's
    }
  }
}
