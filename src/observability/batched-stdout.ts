import { pino } from "pino";

/** How long a log line may wait in memory before it is written (docs/metrics.md, Logs). */
export const LOG_FLUSH_MS = 100;
/** Lines are handed to the writer in chunks of about this size (each hand-over is a write(2) on a thread and a callback). */
const BATCH_BYTES = 32 * 1024;
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
  private readonly out = pino.destination({
    dest: 1,
    sync: false,
    maxLength: LOG_MAX_BUFFERED_BYTES,
    contentMode: "buffer",
  });
  /**
   * Lines are encoded into this buffer as they come, so the strings die young: held as
   * strings for up to LOG_FLUSH_MS they outlived the young generation and were copied by every
   * scavenge, then promoted (in situ that cost several times the line's formatting).
   */
  private readonly batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
  private used = 0;
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
    this.out.on("drop", (data: Buffer) => {
      this.handed -= data.length;
      this.dropped += countLines(data);
      this.settleWaiters();
    });
    process.on("exit", () => this.flushSync());
  }

  write(line: string): boolean {
    // A UTF-16 unit is at most 3 bytes of UTF-8: a line that may not fit goes after a push.
    if (this.used + line.length * 3 > this.batch.length) {
      this.push();
      if (line.length * 3 > this.batch.length) {
        this.hand(Buffer.from(line));
        return true;
      }
    }
    this.used += this.batch.write(line, this.used);
    if (!this.timer) {
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
    if (this.used === 0) return;
    // The writer keeps the chunk until it is written, and counts only its length against the
    // cap: the chunk is a copy of exactly the bytes used (not a view of the 32 KiB batch, nor a
    // slice of a shared pool slab), and the batch buffer is used again.
    const chunk = Buffer.allocUnsafeSlow(this.used);
    this.batch.copy(chunk, 0, 0, this.used);
    this.used = 0;
    this.hand(chunk);
  }

  private hand(lines: Buffer): void {
    let chunk = lines;
    const droppedBefore = this.dropped;
    if (droppedBefore > 0) {
      const notice = `${JSON.stringify({ level: "warn", time: new Date().toISOString(), service: "stoka-proxy", msg: "stdout was not read fast enough: log lines were dropped", dropped_lines: droppedBefore })}\n`;
      chunk = Buffer.concat([Buffer.from(notice), lines]);
    }
    this.handed += chunk.length;
    try {
      this.out.write(chunk as unknown as string); // contentMode "buffer": SonicBoom takes Buffers
    } catch {
      // A closed stdout: the lines have nowhere to go.
      this.handed -= chunk.length;
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

function countLines(data: Buffer): number {
  let n = 0;
  for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10, i + 1)) n++;
  return n;
}
