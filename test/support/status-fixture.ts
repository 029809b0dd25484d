import { buildStatusView } from "../../src/operator/status/build-view.js";
import type { PaymentSummaryInput, StatusInput } from "../../src/operator/status/build-view.js";
import type { StatusView } from "../../src/operator/status/view.js";

/**
 * A status view as a scripted run would leave it, with hostile strings wherever the page shows
 * data (route and client names, reasons, tx hashes, budget names), for the renderer's unit
 * test and the browser test.
 */
export const HOSTILE = {
  route: "<script>alert('route')</script>",
  client: `"><img src=x onerror="alert('client')">`,
  reason: "</td></tr></table><script>document.title='pwned'</script>",
  tx: `' onmouseover='alert(1)`,
  budget: "team<b>bold</b>",
  breakerReason: "<iframe src=https://evil.example/></iframe>",
} as const;

export const NOW_MS = Date.parse("2026-03-15T12:00:00.000Z");

export function sampleInput(opts: { manyOld?: number } = {}): StatusInput {
  const t = (iso: string) => Date.parse(iso);
  const payments: PaymentSummaryInput[] = [
    {
      id: "pay-1",
      state: "settled",
      amount: 2_500_000n,
      route: "store",
      client: "app-a",
      startedAtMs: t("2026-03-15T08:00:00Z"),
      tx: "a1".repeat(32),
    },
    {
      id: "pay-2",
      state: "settled",
      amount: 1_400n,
      route: "retrieve",
      client: "app-a",
      startedAtMs: t("2026-03-15T09:00:00Z"),
      tx: "b2".repeat(32),
    },
    {
      id: "pay-3",
      state: "indeterminate",
      amount: 10_000_000n,
      route: HOSTILE.route,
      client: HOSTILE.client,
      startedAtMs: t("2026-03-10T07:00:00Z"),
      tx: HOSTILE.tx,
      reason: HOSTILE.reason,
    },
    {
      id: "pay-4",
      state: "rejected",
      amount: 700n,
      route: "store",
      client: "app-b",
      startedAtMs: t("2026-03-15T10:00:00Z"),
      tx: null,
      reason: "second 402: payment verification failed",
    },
    {
      id: "pay-5",
      state: "settled",
      amount: 30_000_000n,
      route: "queue_push",
      client: "app-b",
      startedAtMs: t("2026-03-02T00:00:00Z"),
      tx: "c3".repeat(32),
    },
    {
      id: "pay-6",
      state: "settled",
      amount: 99n,
      route: "store",
      client: "app-b",
      startedAtMs: t("2026-02-28T23:59:59.999Z"),
      tx: "d4".repeat(32),
    },
    {
      id: "pay-7",
      state: "sent",
      amount: 5_000n,
      route: "update",
      client: "app-a",
      startedAtMs: t("2026-03-15T11:59:00Z"),
      tx: null,
    },
  ];
  for (let i = 0; i < (opts.manyOld ?? 0); i++) {
    payments.push({
      id: `old-${i}`,
      state: "settled",
      amount: 1n,
      route: "retrieve",
      client: "bulk",
      startedAtMs: t("2026-01-01T00:00:00Z") + i * 1000,
      tx: `${i}`.padStart(64, "0"),
    });
  }
  return {
    payments,
    budgets: [
      {
        name: "daily",
        perRequestMax: 5_000_000n,
        reserved: 5_000n,
        limits: [
          { period: "day", limit: 50_000_000n, used: 12_506_400n, resetsAtMs: t("2026-03-16T00:00:00Z") },
          { period: "month", limit: 40_000_000n, used: 42_506_499n, resetsAtMs: t("2026-04-01T00:00:00Z") },
        ],
      },
      {
        name: HOSTILE.budget,
        reserved: 0n,
        limits: [{ period: "rolling_3600s", limit: 1_000_000n, used: 0n }],
      },
    ],
    facts: [
      { label: "network", value: "stellar:testnet" },
      { label: "budget store", value: "sqlite" },
    ],
    breakers: [
      {
        name: "test.api.stoka.space",
        state: "open",
        sinceMs: t("2026-03-15T11:00:00Z"),
        reason: HOSTILE.breakerReason,
      },
      { name: "other", state: "closed" },
    ],
    killSwitch: { on: false },
    ca: {
      fingerprintSha256: Array.from({ length: 32 }, (_, i) =>
        i.toString(16).padStart(2, "0").toUpperCase(),
      ).join(":"),
      subject: "CN=stoka-proxy interception CA",
      certPath: "/var/lib/stoka-proxy/ca.pem",
    },
  };
}

export function sampleView(opts: { manyOld?: number } = {}): StatusView {
  return buildStatusView(sampleInput(opts), () => NOW_MS);
}
