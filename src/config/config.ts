import type { ApprovalRule } from "../operator/approvals/decide.js";
import type { NotifierConfig } from "../operator/notify/notifier.js";
import type { StellarNetwork } from "../stellar/networks.js";
import type { CircuitSettings } from "../resilience/circuit-breaker.js";
import type { IdempotencySettings } from "../resilience/idempotency.js";
import type { ResendPolicy } from "../resilience/paid-resend.js";
import type { RateLimitSettings } from "../resilience/rate-limiter.js";
import type { RetryPolicy } from "../resilience/retry-policy.js";

/** The resolved configuration every part of the proxy reads. Amounts are bigint atomic units. */
export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * A `paid_hosts` entry: an authority (docs/configuration.md "Paid hosts"). `name` matches any
 * port, `name:port` only that port, and wins over `name`.
 */
export interface PaidHostEntry {
  /** Host name as apps address it, normalised (http/host-name.ts); IPv6 without brackets. */
  host: string;
  /** The one port this entry is for; undefined = any port. */
  port?: number;
  /** Where requests for this host are sent (scheme, host, port); undefined = where the app sent them. */
  upstream?: URL;
  /** Allowed payees; empty = learn from the upstream's manifest. */
  payTo: string[];
  /** Routes paid ahead, with the first request (payment/quote-ahead.ts); none by default. */
  quoteAhead?: readonly string[];
}

/** The paid host one request is for: its entry, with the upstream decided. */
export interface PaidHost extends PaidHostEntry {
  upstream: URL;
}

/** A wallet-signed route (docs/architecture.md, Wallet-signed requests): which requests get `Authorization: Stellar …`. */
export interface WalletAuthRoute {
  /** A route name (delete, usage, profile, queue_ack, …), or method + path glob. */
  route?: string;
  method?: string;
  path?: string;
  audience: string;
  /** Tried once when stoka refuses `audience` as unknown (the docs use two spellings). */
  alternativeAudience?: string;
  /** Replace an Authorization header the app set itself (default: keep it). */
  replaceAuthorization: boolean;
}

/**
 * A budget (docs/configuration.md, Budgets): a match, an optional per-request cap, and limits
 * per period: UTC calendar buckets or a rolling window. The engine that counts them is
 * src/budget/.
 */
export type CalendarUnit = "hour" | "day" | "week" | "month";

export type Period = { kind: "calendar"; unit: CalendarUnit } | { kind: "rolling"; seconds: number };

export interface BudgetLimit {
  period: Period;
  amount: bigint;
}

export interface BudgetMatch {
  hosts?: string[];
  methods?: string[];
  /** Path globs: `*` matches within one segment, `**` across segments. */
  paths?: string[];
  /** Route names: store, update, retrieve, queue_push, queue_pop, … */
  routes?: string[];
  clients?: string[];
}

export type { ApprovalRule };

export interface Budget {
  name: string;
  match: BudgetMatch;
  perRequestMax?: bigint;
  limits: BudgetLimit[];
  approval?: ApprovalRule;
}

/**
 * Which hosts blind tunnels and forwards to hosts that are not paid may reach
 * (docs/configuration.md, Egress); the rules are applied by proxy/egress.ts.
 */
export interface EgressPolicy {
  allowHosts: string[];
  denyHosts: string[];
  allowPorts: number[];
  denyPrivate: boolean;
}

/** The wallet: who signs payments and wallet-auth messages (docs/configuration.md, Wallet). */
export interface WalletOptions {
  /** Wallet seed, from STELLAR_SECRET or the secret file. Never logged. */
  secret?: string;
  address?: string;
  paymentCommand?: string;
  paymentCommandTimeoutMs: number;
  rpcUrl: string;
  rpcCaPems: string[];
  ledgerCloseSeconds: number;
  /** Build repeat payments locally from a prepared template (wallet/prepare-cache.ts). */
  prepareCache: boolean;
  signingTimeoutMs: number;
  /** Signs wallet-auth messages when the proxy holds no key. */
  signCommand?: string;
  signCommandTimeoutMs: number;
  /** A keyless sidecar: payments and wallet-auth signed by the signer role (docs/security.md, Keyless sidecars). */
  remoteSigner?: RemoteSignerOptions;
}

/** `wallet.remote_signer`: where the signer is and how this sidecar proves who it is. */
export interface RemoteSignerOptions {
  url: URL;
  /** The pod's bearer token, read from `token_file`. Never logged. */
  token: string;
  /** Extra CA certificates (PEM) to trust for the signer's HTTPS. */
  caPems: string[];
  /** A client certificate and key (PEM) for a signer that asks for mTLS. */
  clientCertPem?: string;
  clientKeyPem?: string;
  timeoutMs: number;
}

/** A token the signer role accepts: whose budgets it spends and which wallet-auth routes it may have signed. */
export interface SignerToken {
  client: string;
  tokenSha256: string;
  walletAuthRoutes: string[];
}

/** `signer:`: this process also signs for keyless sidecars, on its own HTTPS listener. */
export interface SignerOptions {
  listen: ListenAddress;
  certPem: string;
  keyPem: string;
  /** Set: every connection must present a client certificate signed by this CA (mTLS). */
  clientCaPem?: string;
  tokens: SignerToken[];
}

/** Bounds on a requirement's maxTimeoutSeconds (pinned terms). */
export interface TermBounds {
  minTimeoutSeconds: number;
  maxTimeoutSeconds: number;
}

/** The resilience mechanisms (docs/configuration.md, Resilience); null = turned off. */
export interface ResilienceOptions {
  retry: RetryPolicy;
  retryRoutes: Record<string, Partial<RetryPolicy>>;
  rateLimit: RateLimitSettings | null;
  breaker: CircuitSettings | null;
  breakerRoutes: Record<string, Partial<CircuitSettings>>;
  idempotency: IdempotencySettings | null;
  resend: ResendPolicy;
}

export interface ProxyConfig {
  listen: ListenAddress;
  adminListen: ListenAddress;
  network: StellarNetwork;
  asset: string;
  clientName: string;
  paidHosts: PaidHostEntry[];
  /** Upstream base URL for origin-form (gateway) requests. */
  gatewayUpstream: URL;
  terms: TermBounds;
  wallet: WalletOptions;
  walletAuth: WalletAuthRoute[];
  budgets: Budget[];
  upstream: { timeoutMs: number; connectTimeoutMs: number; caPems: string[] };
  maxBufferedBodyBytes: number;
  /** Largest request header section accepted (431 above it). */
  maxHeaderBytes: number;
  /** How long the proxy waits on a client before closing its connection. */
  timeouts: {
    /** A request's head must arrive within this (also: a tunnel's first bytes after the 200). */
    headersMs: number;
    /** A whole request (head and body) must arrive within this. */
    requestMs: number;
    /** A keep-alive client connection idle between requests. */
    clientIdleMs: number;
    /** A CONNECT tunnel with no bytes either way (blind), or idle between requests (paid host). */
    tunnelIdleMs: number;
  };
  /** Open client connections (plain, keep-alive and CONNECT tunnels); 503 past either cap. */
  connections: { maxTotal: number; maxPerClient: number };
  /** Where the SQLite database (budgets, ledger) and the CA live. */
  dataDir: string;
  budgetStore: { kind: "sqlite" } | { kind: "redis"; url: string; prefix: string };
  /**
   * Where payments are booked (ledger and budgets in one transaction): the data directory's
   * SQLite file, or one PostgreSQL database that replicas share. The URL may hold a password:
   * it is never logged nor put in an error (databaseWhere in src/store/postgres-connection.ts).
   */
  paymentStore: { kind: "sqlite" } | { kind: "postgres"; url: string; poolMax: number };
  leaseMs: number;
  /** Gateway clients: a token's SHA-256 → client name. Empty = every request is `clientName`. */
  clients: { name: string; tokenSha256: string }[];
  /** Listening beyond loopback without clients was asked for explicitly (`allow_anonymous`). */
  allowAnonymous: boolean;
  reconcile: { intervalSeconds: number; days: number };
  logLevel: string;
  metricsEnabled: boolean;
  /** TLS interception of paid hosts inside CONNECT; the CA comes from files or the data dir. */
  tls: {
    intercept: boolean;
    caCertFile?: string;
    caKeyFile?: string;
    /** A generated CA carries X.509 name constraints for the paid hosts (RFC 5280 §4.2.1.10). */
    caNameConstraints: boolean;
  };
  egress: EgressPolicy;
  resilience: ResilienceOptions;
  /** The kill switch and dry run at start-up. */
  payments: { stopped: boolean; dryRun: boolean };
  /** Bearer token of the admin endpoints (`POST /admin/reload`, `/payments/*`; admin.token_file or STOKA_PROXY_ADMIN_TOKEN); none = they answer 403. Never logged. */
  adminToken?: string;
  /** Bearer token /metrics requires (STOKA_PROXY_METRICS_TOKEN); none = open on the admin port. */
  metricsToken?: string;
  /** Webhook destinations and rules, secrets resolved (`notifications:`); absent = none sent. */
  notifications?: NotifierConfig;
  /** How long in-flight requests may run after SIGTERM before they are cut (docs/operations.md). */
  shutdown: { drainMs: number };
  /** The signer role for keyless sidecars (docs/configuration.md, Signer role); absent = off. */
  signer?: SignerOptions;
}
