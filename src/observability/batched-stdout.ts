import { pino } from "pino";

/** How long a log line may wait in memory before it is written (docs/metrics.md, Logs). */
export const LOG_FLUSH_MS = 100;
/** Lines are handed to the writer in chunks of about this size. */
const BATCH_BYTES = 4096;
/** What may wait for a stdout nobody reads before lines are dropped (counted, then reported). */
export const LOG_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/**
 * stdout for the logs, written in batches: pino's default writes each line to fd 1
 * synchronously, one blocking write(2) per request on the proxy's only thread, and even an
 * asynchronous write per line was an eighth of a pass-through request's CPU. Lines gather here
 * up to BATCH_BYTES or LOG_FLUSH_MS, whichever comes first, and are then handed to an
 * asynchronous writer (SonicBoom) that keeps writing until it has nothing left, so a line never
 * waits on a later one. At exit what is left is written synchronously. A `kill -9` can lose
 * the last LOG_FLUSH_MS of lines (and whatever a slow stdout had not taken yet), never a
 * payment: the ledger is committed before its answer goes back.
 *
 * A stdout nobody reads (a stuck log shipper) must not grow the proxy until it is killed: past
 * LOG_MAX_BUFFERED_BYTES waiting, lines are dropped and counted, and the first line written
 * after says how many.
 */
export class BatchedStdout {
  private readonly out = pino.destination({ dest: 1, sync: false, maxLength: LOG_MAX_BUFFERED_BYTES });
  private pending = "";
  private timer: NodeJS.Timeout | undefined;
  /** Bytes handed to the writer, and written by it (its `write` event), for flush(cb). */
  private handed = 0;
  private written = 0;
  private dropped = 0;
  private readonly waiting: (() => void)[] = [];

  constructor() {
    this.out.on("write", (n: number) => {
      this.written += n;
      this.settleWaiters();
    });
    this.out.on("drop", (data: string) => {
      this.handed -= Buffer.byteLength(data);
      this.dropped += data.split("\n").length - 1;
      this.settleWaiters();
    });
    process.on("exit", () => this.flushSync());
  }

  write(line: string): boolean {
    this.pending += line;
    if (this.pending.length >= BATCH_BYTES) this.push();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.push(), LOG_FLUSH_MS);
      this.timer.unref();
    }
    return true;
  }

  /** pino's logger.flush(cb): calls back once every line logged so far is written (or dropped). */
  flush(cb?: (err?: Error) => void): void {
    this.push();
    if (!cb) return;
    this.waiting.push(() => cb());
    this.settleWaiters();
  }

  /** Everything now, synchronously: at exit, and for pino's fatal path. */
  flushSync(): void {
    this.push();
    try {
      this.out.flushSync();
    } catch {
      // A closed stdout: there is nowhere left to say so.
    }
  }

  private push(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.pending) return;
    let chunk = this.pending;
    this.pending = "";
    const droppedBefore = this.dropped;
    if (droppedBefore > 0) {
      chunk =
        `${JSON.stringify({ level: "warn", time: new Date().toISOString(), service: "stoka-proxy", msg: "stdout was not read fast enough: log lines were dropped", dropped_lines: droppedBefore })}\n` +
        chunk;
    }
    this.handed += Buffer.byteLength(chunk);
    try {
      this.out.write(chunk);
    } catch {
      // A closed stdout: the lines have nowhere to go.
      this.handed -= Buffer.byteLength(chunk);
      return;
    }
    // The notice went out with this chunk unless the chunk itself was dropped.
    if (this.dropped === droppedBefore) this.dropped = 0;
  }

  private settleWaiters(): void {
    if (this.written < this.handed) return;
    for (const w of this.waiting.splice(0)) w();
  }
}
