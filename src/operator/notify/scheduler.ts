/**
 * Time for the notifier: a clock and one-shot timers. Production uses the real ones; unit
 * tests pass a scheduler they advance by hand, so a backoff schedule is checked without
 * waiting through it.
 */
export interface Timer {
  cancel(): void;
}

export interface Scheduler {
  now(): number;
  /**
   * Runs `fn` once after `ms`. `keepAlive: false` (retry waits) does not hold the process
   * open on its own; `close()`'s flush deadline passes true.
   */
  setTimer(fn: () => void, ms: number, keepAlive?: boolean): Timer;
}

export const realScheduler: Scheduler = {
  now: () => Date.now(),
  setTimer(fn, ms, keepAlive = false) {
    const t = setTimeout(fn, Math.max(0, ms));
    if (!keepAlive) t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

/** Resolves after `ms` on the scheduler, or at once (false) when `signal` aborts first. */
export function sleep(scheduler: Scheduler, ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      timer.cancel();
      resolve(false);
    };
    const timer = scheduler.setTimer(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
