import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import type { PaymentSummary } from "../../src/ledger/ledger.js";
import { createLogger } from "../../src/observability/logger.js";
import { OperatorEvents } from "../../src/observability/operator-events.js";
import type { RequestRecord } from "../../src/observability/request-record.js";
import type { StatusReads } from "../../src/observability/status-source.js";
import { Notifier } from "../../src/operator/notify/notifier.js";
import type { PostRequest, Transport } from "../../src/operator/notify/http-post.js";
import { SqliteEventStore } from "../../src/operator/security/sqlite-event-store.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { selectRequirement } from "../../src/x402/terms.js";
import type { PaymentRequirement } from "../../src/x402/payment-header.js";

/**
 * How a finished request becomes operator events: which answers are security events, which
 * emit notifications, and that thresholds fire once per period. The notifier is the real one;
 * its transport records the POSTs (the HTTP side is tested end to end in proxy-notifications).
 */
const config = resolveConfig(
  configFileSchema.parse({ stoka_env: "test", budgets: [{ name: "team", limits: { day: "0.0001 USDC" } }] }),
  "(test)",
  {},
);
const NOW = Date.parse("2026-03-15T12:00:00Z");

function world(used: { value: bigint }, latest: PaymentSummary[] = []) {
  const posted: PostRequest[] = [];
  const transport: Transport = {
    post: (r) => {
      posted.push(r);
      return Promise.resolve({ kind: "status", status: 204 });
    },
    close: () => undefined,
  };
  const notifier = new Notifier(
    {
      destinations: [
        { name: "ops", url: "http://127.0.0.1:9/hook", secret: "s".repeat(32), timeoutMs: 1_000 },
      ],
      rules: [
        { events: ["budget.threshold"], minSeverity: "info", thresholds: [80, 100] },
        { events: ["payment.indeterminate", "payment.refused_terms"], minSeverity: "info" },
      ],
      queueSize: 100,
      dedupWindowMs: 0,
      retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1, maxElapsedMs: 1 },
    },
    { transport },
  );
  const reads: StatusReads = {
    latest: () => Promise.resolve(latest),
    used: () => Promise.resolve(used.value),
    reserved: () => Promise.resolve(0n),
  };
  const db = openDatabase(":memory:");
  const store = new SqliteEventStore(db);
  let now = NOW;
  const events = new OperatorEvents({
    config,
    logger: createLogger("silent"),
    now: () => now,
    reads,
    events: store,
    notifier,
  });
  const names = () => posted.map((p) => (JSON.parse(p.body) as { event: string }).event);
  return {
    events,
    store,
    posted,
    names,
    advance: (ms: number) => (now += ms),
    close: async () => {
      await events.close(1_000);
      db.close();
    },
  };
}

const record = (over: Partial<RequestRecord>): RequestRecord => ({
  requestId: "r",
  mode: "forward",
  method: "POST",
  host: "api.stoka.space",
  route: "store",
  client: "app",
  ...over,
});

describe("OperatorEvents.requestFinished", () => {
  it.each<[string, string | undefined, Partial<RequestRecord>, string | null]>([
    ["a 407", "proxy_auth_required", {}, "proxy_auth_required"],
    ["a 401", "client_auth_required", {}, "client_auth_required"],
    ["an egress denial", "egress_denied", {}, "egress_denied"],
    ["a 402 refused for its terms", "terms_rejected", { errorCode: "terms_rejected" }, "terms_rejected"],
    ["a budget refusal is not one", "budget_exceeded", { errorCode: "budget_exceeded" }, null],
    ["a paid request is not one", undefined, { outcome: "settled" }, null],
    ["a 508 loop is not one", "loop_detected", {}, null],
  ])("%s", async (_name, header, over, code) => {
    const w = world({ value: 0n });
    try {
      w.events.requestFinished(record(over), 400, header);
      await w.events.settle();
      expect((await w.store.list()).map((e) => e.code)).toEqual(code ? [code] : []);
    } finally {
      await w.close();
    }
  });

  it("a refused term emits payment.refused_terms with the term and what was offered", async () => {
    const w = world({ value: 0n });
    try {
      w.events.requestFinished(
        record({
          errorCode: "terms_rejected",
          refusedTerm: { term: "pay_to", offered: "GEVIL" },
          reason: "payee",
        }),
        402,
        "terms_rejected",
      );
      await w.events.close(1_000);
      const body = JSON.parse(w.posted[0]?.body ?? "{}") as { event: string; data: Record<string, unknown> };
      expect(body.event).toBe("payment.refused_terms");
      expect(body.data).toMatchObject({ host: "api.stoka.space", term: "pay_to", offered: "GEVIL" });
    } finally {
      await w.close();
    }
  });

  it("an indeterminate payment is notified from its ledger row", async () => {
    const row = {
      paymentId: "pay-9",
      state: "indeterminate",
      amount: 1_400n,
      route: "store",
      client: "app",
      reason: "dropped",
      upstreamStatus: null,
      tx: null,
      atMs: NOW,
      startedAtMs: NOW,
    } as unknown as PaymentSummary;
    const w = world({ value: 0n }, [row]);
    try {
      w.events.requestFinished(
        record({ outcome: "indeterminate", paymentId: "pay-9" }),
        502,
        "payment_indeterminate",
      );
      await w.events.settle();
      await w.events.close(1_000);
      const body = JSON.parse(w.posted[0]?.body ?? "{}") as { event: string; data: Record<string, unknown> };
      expect(body.event).toBe("payment.indeterminate");
      expect(body.data.payment_id).toBe("pay-9");
      expect(body.data.amount).toEqual({ atomic: "1400", usdc: "0.00014 USDC" });
    } finally {
      await w.close();
    }
  });

  it("budget thresholds fire once per period: 80, then 100, then not again until the next day", async () => {
    const used = { value: 0n };
    const w = world(used); // the day's limit is 1000 atomic units
    const paid = () =>
      w.events.requestFinished(record({ outcome: "settled", paymentId: "p" }), 200, undefined);
    try {
      used.value = 500n;
      paid();
      await w.events.settle();
      used.value = 850n;
      paid();
      await w.events.settle();
      paid();
      await w.events.settle();
      used.value = 1_000n;
      paid();
      await w.events.settle();
      paid();
      await w.events.settle();
      w.advance(86_400_000); // the next UTC day
      used.value = 900n;
      paid();
      await w.events.settle();
      await w.events.close(1_000);
      const thresholds = w.posted.map(
        (p) => (JSON.parse(p.body) as { data: { threshold_percent: number } }).data.threshold_percent,
      );
      expect(w.names().every((n) => n === "budget.threshold")).toBe(true);
      expect(thresholds).toEqual([80, 100, 80]);
    } finally {
      await w.close();
    }
  });
});

describe("selectRequirement names the broken term", () => {
  const terms = {
    network: "stellar:testnet",
    asset: "CUSDC",
    payTo: ["GPAYEE"],
    minTimeoutSeconds: 10,
    maxTimeoutSeconds: 600,
  };
  const good = {
    scheme: "exact",
    network: "stellar:testnet",
    asset: "CUSDC",
    payTo: "GPAYEE",
    amount: "1400",
    maxTimeoutSeconds: 60,
    extra: { areFeesSponsored: true },
  } as unknown as PaymentRequirement;
  it.each<[string, Partial<PaymentRequirement>, string, string]>([
    ["payee", { payTo: "GEVIL" }, "pay_to", "GEVIL"],
    ["asset", { asset: "CEVIL" }, "asset", "CEVIL"],
    ["network", { network: "stellar:pubnet" }, "network", "stellar:pubnet"],
    ["scheme", { scheme: "upto" }, "scheme", "upto"],
    ["timeout", { maxTimeoutSeconds: 9_999 }, "timeout", "9999"],
    ["a long hostile value is cut", { payTo: "G".repeat(500) }, "pay_to", "G".repeat(100)],
  ])("%s", (_name, change, term, offered) => {
    const r = selectRequirement([{ ...good, ...change } as PaymentRequirement], terms);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.violations[0]).toMatchObject({ term, offered });
  });
});
