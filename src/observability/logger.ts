import { pino } from "pino";
import type { Logger } from "pino";

/**
 * JSON logs, one line per request. Request lines are built from chosen fields only; redaction
 * is the second line of defence for anything that carries a secret or a payment header.
 */
export const REDACT_PATHS = [
  "secret",
  "*.secret",
  "headers.authorization",
  "headers.proxy-authorization",
  "headers.x-payment",
  "headers.payment-signature",
  "headers.cookie",
  "headers.set-cookie",
  "*.headers.authorization",
  "*.headers.proxy-authorization",
  "*.headers.x-payment",
  "*.headers.payment-signature",
  "*.headers.cookie",
];

/** How long a log line may wait in memory before it is written (docs/metrics.md, Logs). */
export const LOG_FLUSH_MS = 100;

/**
 * stdout for the logs, written in batches: pino's default writes each line to fd 1
 * synchronously, one blocking write(2) per request on the proxy's only thread, and even an
 * asynchronous write per line was an eighth of a pass-through request's CPU. Lines gather up
 * to 4 KiB or LOG_FLUSH_MS, whichever comes first; pino flushes what is left synchronously
 * when the process exits (it registers that for asynchronous destinations). A `kill -9` can
 * lose the last LOG_FLUSH_MS of lines, never a payment: the ledger is written and committed
 * before its answer goes back.
 */
function batchedStdout(): { write(line: string): boolean; flush(cb?: (err?: Error) => void): void } {
  const out = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    try {
      out.flush();
    } catch {
      // A closed stdout: there is nowhere left to say so.
    }
  };
  return {
    write(line: string): boolean {
      const more = out.write(line);
      if (!timer) {
        timer = setTimeout(flush, LOG_FLUSH_MS);
        timer.unref();
      }
      return more;
    },
    // pino's logger.flush(cb): everything buffered goes out now.
    flush(cb?: (err?: Error) => void): void {
      clearTimeout(timer);
      timer = undefined;
      out.flush(cb);
    },
  };
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { service: "stoka-proxy" },
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    // "level":"warn" and an ISO time read without pino's number tables (docs/operations.md, Logs).
    formatters: { level: (label: string) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination
    ? pino(options, destination as Parameters<typeof pino>[1])
    : pino(options, batchedStdout());
}

export type { Logger };

/**
 * The logger for the one line per request: its fields are a fixed set the proxy chooses
 * (server.ts logLine: ids, route, status, amounts, codes), none of them a header or a secret,
 * so the redaction pass, which walks every key of every line against the wildcard paths above
 * (about 25 µs a line, a fifth of a pass-through request's CPU), is skipped for it alone.
 * Every other line keeps it.
 */
export function requestLineLogger(logger: Logger): Logger {
  return logger.child({}, { redact: { paths: [] } });
}
