import type { ProxyConfig } from "./config.js";

/**
 * What a reload may change in a running proxy (docs/operations.md, Reloading the
 * configuration). Pure: from the configuration in use and the one just loaded, the one to use
 * next, the fields it changes and the fields that differ but only take effect at the next start.
 *
 * Live fields are read per request from the LiveConfig. Everything else was used to build
 * something that lives as long as the process (listeners, stores, the wallet, the upstream
 * client's TLS trust, timers): changing it needs a restart, so its old value is kept.
 */
type Key = keyof ProxyConfig;

/** The name an operator knows each field by (the config file's, or the environment's). */
const LIVE: Partial<Record<Key, string>> = {
  budgets: "budgets",
  clients: "clients",
  clientName: "client_name",
  allowAnonymous: "allow_anonymous",
  paidHosts: "paid_hosts",
  egress: "egress",
  walletAuth: "wallet_auth",
  terms: "terms",
  gatewayUpstream: "gateway.upstream",
  maxBufferedBodyBytes: "max_buffered_body_bytes",
  shutdown: "shutdown.drain_seconds",
};

// Keyed by name, not `Key`: fields added to ProxyConfig later (payment_store) can be named here first.
const RESTART: Partial<Record<string, string>> = {
  listen: "listen",
  adminListen: "admin_listen",
  network: "network",
  asset: "asset",
  wallet: "wallet",
  upstream: "upstream",
  maxHeaderBytes: "max_header_bytes",
  timeouts: "timeouts",
  connections: "connections",
  dataDir: "data_dir",
  paymentStore: "payment_store",
  budgetStore: "budget_store",
  leaseMs: "lease_seconds",
  reconcile: "reconcile",
  logLevel: "log_level",
  metricsEnabled: "metrics.enabled",
  tls: "tls",
  metricsToken: "STOKA_PROXY_METRICS_TOKEN",
  adminToken: "admin token (admin.token_file / STOKA_PROXY_ADMIN_TOKEN)",
  // Built once: the rate limiters, breakers and retry policies keep their state per host/route.
  resilience: "resilience",
  // The start-up state only: the running switch is flipped with POST /payments/stop|resume|dry-run.
  payments:
    "payments (start-up kill switch and dry run; flip them now with POST /payments/stop, /payments/resume, /payments/dry-run)",
  notifications: "notifications",
  signer: "signer (its listener, certificate and tokens)",
};

/** Every top-level field a reload can meet, for the test that keeps this file complete. */
export const RELOAD_FIELDS: readonly string[] = [...Object.keys(LIVE), ...Object.keys(RESTART)];

export interface ReloadPlan {
  /** The configuration to use from the next request on. */
  config: ProxyConfig;
  /** Live fields that changed, by their config name. */
  applied: string[];
  /** Fields that changed but keep their old value until a restart. */
  needsRestart: string[];
}

/** Same value, whatever the object identities: bigints and URLs compared by their text. */
function sameValue(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === "bigint") return `${x}n`;
    if (x instanceof URL) return x.href;
    return x;
  });
}

export function planReload(current: ProxyConfig, next: ProxyConfig): ReloadPlan {
  const config: ProxyConfig = { ...current };
  const applied: string[] = [];
  const needsRestart: string[] = [];
  const keys = new Set<Key>([...(Object.keys(current) as Key[]), ...(Object.keys(next) as Key[])]);
  for (const key of keys) {
    if (sameValue(current[key], next[key])) continue;
    const live = LIVE[key];
    if (live !== undefined) {
      applied.push(live);
      Object.assign(config, { [key]: next[key] });
    } else {
      // Unknown to this table = built into something long-lived: kept until a restart.
      needsRestart.push(RESTART[key] ?? key);
    }
  }
  return { config, applied: applied.sort(), needsRestart: needsRestart.sort() };
}
