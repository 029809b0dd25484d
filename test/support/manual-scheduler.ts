import type { Scheduler, Timer } from "../../src/operator/notify/scheduler.js";

/**
 * A scheduler whose time moves only when the test says so: `advance(ms)` fires every timer due
 * in that span, in order, letting promises settle between them. Backoff schedules are checked
 * in milliseconds of fake time, never by sleeping.
 */
interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** Lets every queued microtask and immediate run (promise chains several steps deep). */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

export class ManualScheduler implements Scheduler {
  private timers: Pending[] = [];
  private seq = 0;

  constructor(private nowMs = Date.parse("2026-03-15T12:00:00Z")) {}

  now(): number {
    return this.nowMs;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const t: Pending = { at: this.nowMs + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(t);
    return {
      cancel: () => {
        t.cancelled = true;
      },
    };
  }

  /** Delays (from now) of the timers still waiting, soonest first. */
  pendingDelays(): number[] {
    return this.live()
      .map((t) => t.at - this.nowMs)
      .sort((a, b) => a - b);
  }

  private live(): Pending[] {
    this.timers = this.timers.filter((t) => !t.cancelled);
    return this.timers;
  }

  async advance(ms: number): Promise<void> {
    const until = this.nowMs + ms;
    await settle();
    for (let guard = 0; guard < 10_000; guard++) {
      const due = this.live()
        .filter((t) => t.at <= until)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.nowMs = Math.max(this.nowMs, due.at);
      due.cancelled = true;
      due.fn();
      await settle();
    }
    this.nowMs = until;
    await settle();
  }

  /** Moves time to the next timer and fires it; returns the delay that passed. */
  async next(): Promise<number> {
    const delays = this.pendingDelays();
    const d = delays[0];
    if (d === undefined) throw new Error("no timer is waiting");
    await this.advance(d);
    return d;
  }
}
