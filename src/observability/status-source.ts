import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { bucketEnd, bucketStart, periodLabel } from "../budget/budget.js";
import type { Budget, BudgetLimit, ProxyConfig } from "../config/config.js";
import type { PaymentSummary } from "../ledger/ledger.js";
import { buildStatusView } from "../operator/status/build-view.js";
import type { BudgetInput, PaymentSummaryInput } from "../operator/status/build-view.js";
import { derFromPem, sha256Fingerprint } from "../operator/status/ca-fingerprint.js";
import type { BreakerView, CaView, KillSwitchView, StatusView } from "../operator/status/view.js";
import { scrubSecrets } from "../secrets/redact.js";

/**
 * The status page's data, read from the proxy's stores through the few reads it needs (the
 * same names and shapes as the PaymentStore's, so either today's ledger + budget store or a
 * PaymentStore can stand behind it). Read-only and never on the request path: the admin
 * listener asks, and a view is kept for `ttlMs` (one read at a time, shared by every caller),
 * so a refresh storm costs at most one set of reads per second. A view that took long to build
 * (SQLite reads run on the proxy's own thread) is kept ten times as long as it took, so the
 * page never takes more than a tenth of the proxy's time, however large the ledger.
 */
export interface StatusReads {
  /** The latest row of every payment, with when it started. */
  latest(): Promise<readonly PaymentSummary[]>;
  /** Current use (spent + reserved) of one limit of a budget at `nowMs`. */
  used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint>;
  /** Money reserved but not finished, per budget. */
  reserved(budget: Budget): Promise<bigint>;
}

/** What other parts may add to the page (breakers, the kill switch); absent ones are left out. */
export interface StatusExtras {
  breakers?: () => BreakerView[] | undefined;
  killSwitch?: () => KillSwitchView | undefined;
  /** More facts (e.g. security events today). */
  facts?: () => Promise<{ label: string; value: string }[]>;
}

export interface StatusSourceOptions {
  config: ProxyConfig;
  reads: StatusReads;
  /** The interception CA's certificate file, once known; undefined when interception is off. */
  caCertPath: () => string | undefined;
  now?: () => number;
  ttlMs?: number;
  extras?: StatusExtras;
  version?: string;
}

export const STATUS_CACHE_MS = 1_000;

/** A calendar limit's reset time; none for a rolling window. */
function resetsAt(limit: BudgetLimit, nowMs: number): number | undefined {
  if (limit.period.kind !== "calendar") return undefined;
  return bucketEnd(limit.period.unit, bucketStart(limit.period.unit, nowMs));
}

function toPaymentInput(p: PaymentSummary): PaymentSummaryInput {
  return {
    id: p.paymentId,
    state: p.state,
    amount: p.amount,
    route: p.route,
    client: p.client,
    startedAtMs: p.startedAtMs,
    tx: p.tx,
    reason: p.reason,
    ...(p.payer ? { payer: p.payer } : {}),
  };
}

export class StatusSource {
  private cached: { atMs: number; keepMs: number; view: StatusView } | undefined;
  private pending: Promise<StatusView> | undefined;
  private caCache: { path: string; view: CaView | undefined } | undefined;
  private readonly now: () => number;
  private readonly ttlMs: number;

  constructor(private readonly o: StatusSourceOptions) {
    this.now = o.now ?? Date.now;
    this.ttlMs = o.ttlMs ?? STATUS_CACHE_MS;
  }

  /** The current view: cached for ttlMs; concurrent callers share one build. */
  view(): Promise<StatusView> {
    const c = this.cached;
    if (c !== undefined && this.now() - c.atMs < c.keepMs) return Promise.resolve(c.view);
    const started = performance.now();
    this.pending ??= this.build().then(
      (view) => {
        const tookMs = performance.now() - started;
        this.cached = { atMs: this.now(), keepMs: Math.max(this.ttlMs, tookMs * 10), view };
        this.pending = undefined;
        return view;
      },
      (e: unknown) => {
        this.pending = undefined;
        throw e;
      },
    );
    return this.pending;
  }

  private async build(): Promise<StatusView> {
    const { config, reads, extras } = this.o;
    const nowMs = this.now();
    const payments = (await reads.latest()).map(toPaymentInput);
    let budgetsUnavailable: string | undefined;
    const budgets: BudgetInput[] = [];
    try {
      for (const b of config.budgets) {
        const limits = [];
        for (const l of b.limits) {
          const at = resetsAt(l, nowMs);
          limits.push({
            period: periodLabel(l.period),
            limit: l.amount,
            used: await reads.used(b, l, nowMs),
            ...(at === undefined ? {} : { resetsAtMs: at }),
          });
        }
        budgets.push({
          name: b.name,
          ...(b.perRequestMax === undefined ? {} : { perRequestMax: b.perRequestMax }),
          reserved: await reads.reserved(b),
          limits,
        });
      }
    } catch (e) {
      budgets.length = 0;
      // The store's own words, without credentials a URL in them may carry.
      const why = (e as Error).message.replace(/\/\/[^/@\s]*@/g, "//");
      budgetsUnavailable = scrubSecrets(`the budget store cannot be read: ${why}`);
    }
    const breakers = extras?.breakers?.();
    const killSwitch = extras?.killSwitch?.();
    const ca = await this.ca();
    return buildStatusView(
      {
        payments,
        budgets,
        ...(budgetsUnavailable === undefined ? {} : { budgetsUnavailable }),
        facts: [...this.facts(), ...((await extras?.facts?.().catch(() => [])) ?? [])],
        ...(breakers === undefined ? {} : { breakers }),
        ...(killSwitch === undefined ? {} : { killSwitch }),
        ...(ca === undefined ? {} : { ca }),
      },
      () => nowMs,
    );
  }

  private facts(): { label: string; value: string }[] {
    const c = this.o.config;
    return [
      { label: "network", value: c.network },
      { label: "asset", value: c.asset },
      { label: "budget store", value: c.budgetStore.kind },
      { label: "paid hosts", value: String(c.paidHosts.length) },
      {
        label: "clients",
        value: c.clients.length === 0 ? "none (one default client)" : String(c.clients.length),
      },
      ...(this.o.version ? [{ label: "version", value: this.o.version }] : []),
    ];
  }

  /** The CA's fingerprint, read once per certificate path (the file is public). */
  private async ca(): Promise<CaView | undefined> {
    const path = this.o.caCertPath();
    if (path === undefined) return undefined;
    if (this.caCache?.path === path) return this.caCache.view;
    let view: CaView | undefined;
    try {
      const pem = await readFile(path, "utf8");
      const der = derFromPem(pem);
      if (der) {
        const cert = new X509Certificate(pem);
        const notAfterMs = Date.parse(cert.validTo);
        view = {
          fingerprintSha256: sha256Fingerprint(der),
          subject: cert.subject.replace(/\n/g, ", "),
          ...(Number.isFinite(notAfterMs) ? { notAfterMs } : {}),
          certPath: path,
        };
      }
    } catch {
      view = undefined;
    }
    this.caCache = { path, view };
    return view;
  }
}

/** Today's stores (a ledger with a synchronous `latest`, an async budget store) as StatusReads. */
export function statusReadsOf(stores: {
  ledger: { latest(): PaymentSummary[] };
  budgets: Pick<StatusReads, "used" | "reserved">;
}): StatusReads {
  return {
    latest: () => Promise.resolve(stores.ledger.latest()),
    used: (b, l, nowMs) => stores.budgets.used(b, l, nowMs),
    reserved: (b) => stores.budgets.reserved(b),
  };
}
