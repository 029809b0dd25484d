import { pino } from "pino";
import type { Logger } from "pino";
import type { RequestRecord } from "./request-record.js";
import { formatUsdc } from "../stellar/amount.js";

/**
 * The one log line per request (docs/operations.md, Logs), written straight to the logger's
 * stream: the same bytes pino writes for these fields (its level label, ISO time, bindings,
 * the fields in this order, `msg`), built here because pino's generic path (a merge object,
 * a key walk, a fresh ISO time per line) was a tenth of a pass-through request's CPU. Its
 * fields are a fixed set the proxy chooses, none of them a header or a secret, so there is
 * nothing to redact. Strings go through JSON.stringify (always valid JSON).
 */
export interface RequestLineFields {
  record: RequestRecord;
  status: number;
  durationMs: number;
}

/** `"time":"…"` for a millisecond, reused while the clock stays in it. */
let lastMs = -1;
let lastTime = "";
function isoTimeAt(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastTime = new Date(ms).toISOString();
  }
  return lastTime;
}

const str = JSON.stringify;

/** The line, newline included. `bindings` is the logger's own (`,"service":"stoka-proxy"`). Pure but for the time cache. */
export function formatRequestLine(f: RequestLineFields, bindings: string, nowMs: number): string {
  const r = f.record;
  let line = `{"level":"info","time":"${isoTimeAt(nowMs)}"${bindings},"request_id":${str(r.requestId)},"mode":${str(r.mode)},"method":${str(r.method)},"host":${str(r.host)},"route":${str(r.route)},"client":${str(r.client)},"status":${String(f.status)}`;
  if (r.paidAtomic !== undefined) {
    line += `,"paid_atomic":${str(r.paidAtomic)}`;
    // For the person reading the line; paid_atomic stays the exact figure.
    line += `,"paid_usdc":${str(formatUsdc(BigInt(r.paidAtomic)))}`;
  }
  if (r.tx !== undefined) line += `,"tx":${str(r.tx)}`;
  if (r.outcome !== undefined) line += `,"outcome":${str(r.outcome)}`;
  if (r.paymentId !== undefined) line += `,"payment_id":${str(r.paymentId)}`;
  if (r.errorCode !== undefined) line += `,"error_code":${str(r.errorCode)}`;
  if (r.walletAuth !== undefined) line += `,"wallet_auth":${str(r.walletAuth)}`;
  if (r.reason !== undefined) line += `,"reason":${str(r.reason)}`;
  const duration = Math.round(f.durationMs * 1000) / 1000;
  // pino writes a non-finite number as null.
  line += `,"duration_ms":${Number.isFinite(duration) ? String(duration) : "null"},"msg":"request"}\n`;
  return line;
}

/** Writes request lines to `logger`'s stream while its level lets `info` through. */
export class RequestLineWriter {
  private readonly stream: { write(line: string): unknown };
  private readonly bindings: string;

  constructor(private readonly logger: Logger) {
    // pino's own stream and its serialised bindings: the public way to reach both.
    const self = logger as unknown as Record<symbol, unknown>;
    this.stream = self[pino.symbols.streamSym] as { write(line: string): unknown };
    this.bindings = (self[pino.symbols.chindingsSym] as string | undefined) ?? "";
  }

  write(f: RequestLineFields): void {
    if (!this.logger.isLevelEnabled("info")) return;
    this.stream.write(formatRequestLine(f, this.bindings, Date.now()));
  }
}
