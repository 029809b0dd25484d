import { Writable } from "node:stream";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { RequestLineWriter } from "../../src/observability/request-line.js";
import type { RequestRecord } from "../../src/observability/request-record.js";
import { formatUsdc } from "../../src/stellar/amount.js";

/** Lines written to a stream, as strings. */
function sink(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { stream, lines };
}

/** What the request line was before it was built by hand: pino's own line for these fields. */
function pinoLine(record: RequestRecord, status: number, durationMs: number, now: number): string {
  const { stream, lines } = sink();
  const logger = createLogger("info", stream).child({}, { redact: { paths: [] } });
  const realNow = Date.now;
  Date.now = () => now;
  try {
    logger.info(
      {
        request_id: record.requestId,
        mode: record.mode,
        method: record.method,
        host: record.host,
        route: record.route,
        client: record.client,
        status,
        paid_atomic: record.paidAtomic,
        paid_usdc: record.paidAtomic !== undefined ? formatUsdc(BigInt(record.paidAtomic)) : undefined,
        tx: record.tx,
        outcome: record.outcome,
        payment_id: record.paymentId,
        error_code: record.errorCode,
        wallet_auth: record.walletAuth,
        reason: record.reason,
        duration_ms: Math.round(durationMs * 1000) / 1000,
      },
      "request",
    );
  } finally {
    Date.now = realNow;
  }
  return lines.join("");
}

function ourLine(
  record: RequestRecord,
  status: number,
  durationMs: number,
  now: number,
  level = "info",
): string {
  const { stream, lines } = sink();
  const writer = new RequestLineWriter(createLogger(level, stream));
  const realNow = Date.now;
  Date.now = () => now;
  try {
    writer.write({ record, status, durationMs });
  } finally {
    Date.now = realNow;
  }
  return lines.join("");
}

// Well-formed text: pino leaves a lone surrogate raw, JSON.stringify escapes it (ours is valid JSON).
const text = fc.string({ unit: "grapheme", maxLength: 60 });
const optional = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const record: fc.Arbitrary<RequestRecord> = fc.record({
  requestId: text,
  mode: fc.constantFrom("forward", "gateway", "tunnel" as const),
  method: text,
  host: text,
  route: text,
  client: text,
  paidAtomic: optional(fc.bigInt({ min: 0n, max: 10n ** 18n }).map(String)),
  tx: optional(text),
  outcome: optional(fc.constantFrom("settled", "settled_no_receipt", "rejected", "indeterminate" as const)),
  paymentId: optional(text),
  errorCode: optional(text),
  walletAuth: optional(fc.constantFrom("signed", "rejected", "no_signer" as const)),
  reason: optional(text),
});

describe("the request log line (docs/metrics.md, Logs)", () => {
  it("is byte for byte the line pino wrote for the same fields", () => {
    fc.assert(
      fc.property(
        record,
        fc.integer({ min: 100, max: 599 }),
        fc.oneof(fc.double({ min: 0, max: 1e7, noNaN: true }), fc.constant(0.0004999), fc.constant(12.0005)),
        fc.integer({ min: 0, max: 4102444800000 }),
        (r, status, ms, now) => {
          const ours = ourLine(r, status, ms, now);
          expect(ours).toBe(pinoLine(r, status, ms, now));
          expect(JSON.parse(ours)).toMatchObject({ level: "info", service: "stoka-proxy", msg: "request" });
        },
      ),
      { numRuns: 500 },
    );
  });

  it("carries quotes, backslashes and control bytes as valid JSON", () => {
    const r: RequestRecord = {
      requestId: "id",
      mode: "forward",
      method: "GET",
      host: "h",
      route: "other",
      client: 'a"b\\c\nd\u0001',
      reason: "line\r\nbreak",
    };
    const parsed = JSON.parse(ourLine(r, 200, 1, 0)) as Record<string, unknown>;
    expect(parsed.client).toBe(r.client);
    expect(parsed.reason).toBe(r.reason);
    expect(parsed.time).toBe("1970-01-01T00:00:00.000Z");
  });

  it("is not written below the logger's level", () => {
    const r: RequestRecord = {
      requestId: "id",
      mode: "forward",
      method: "GET",
      host: "h",
      route: "other",
      client: "c",
    };
    expect(ourLine(r, 200, 1, 0, "warn")).toBe("");
  });
});
