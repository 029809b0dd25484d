import { pino } from "pino";
import type { Logger } from "pino";
import { BatchedStdout } from "./batched-stdout.js";

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
    : pino(options, new BatchedStdout());
}

export type { Logger };
