import { DEFAULT_CIRCUIT, checkCircuitSettings } from "../resilience/circuit-breaker.js";
import type { CircuitSettings } from "../resilience/circuit-breaker.js";
import { DEFAULT_IDEMPOTENCY } from "../resilience/idempotency.js";
import { DEFAULT_RESEND_POLICY } from "../resilience/paid-resend.js";
import { DEFAULT_ADAPTIVE, DEFAULT_RATE_LIMIT, checkRateLimitSettings } from "../resilience/rate-limiter.js";
import type { RateLimitSettings } from "../resilience/rate-limiter.js";
import { DEFAULT_RETRY_POLICY } from "../resilience/retry-policy.js";
import type { RetryPolicy } from "../resilience/retry-policy.js";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { StrKey } from "@stellar/stellar-sdk";
import { parseDocument } from "yaml";
import type { ZodError } from "zod";
import { StokaProxyError } from "../errors.js";
import { describeValue, scrubSecrets, secretKind } from "../secrets/redact.js";
import { parseAmount } from "../stellar/amount.js";
import { NETWORKS } from "../stellar/networks.js";
import type { StellarNetwork } from "../stellar/networks.js";
import { openListenerProblem, openAdminProblem } from "./open-listener.js";
import { normaliseHost } from "../http/host-name.js";
import { paidHostLabel, parsePaidHostAuthority } from "./paid-hosts.js";
import type {
  ApprovalRule,
  Budget,
  BudgetLimit,
  ListenAddress,
  PaidHostEntry,
  ProxyConfig,
  RemoteSignerOptions,
  ResilienceOptions,
  SignerOptions,
  WalletAuthRoute,
} from "./config.js";
import { resolveNotifierConfig } from "../operator/notify/config.js";
import { configFileSchema } from "./schema.js";
import { closestKey, keysAt } from "./schema-keys.js";
import type { BudgetFile, ConfigFile } from "./schema.js";

/**
 * Resolves the configuration: flags > env > config file > defaults (docs/configuration.md, Precedence). Every error
 * names the file and the field.
 */
export interface ConfigFlags {
  config?: string;
  listen?: string;
  adminListen?: string;
  logLevel?: string;
  rpcUrl?: string;
  upstream?: string;
  allowAnonymous?: boolean;
  dataDir?: string;
}

/** The levels pino knows; anything else would make `start` throw inside the logger. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Where data goes when nothing says: a per-user state folder (XDG Base Directory spec,
 * $XDG_STATE_HOME, else ~/.local/state), never the folder the user happens to stand in.
 * The container image sets STOKA_PROXY_DATA_DIR=/data itself.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_STATE_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), ".local", "state");
  return join(base, "stoka-proxy");
}

/** Hosts and RPC names of Stellar's test network: they have no place in a prod configuration. */
function looksTestnet(hostname: string): boolean {
  return /(^|[.-])test(net)?([.-]|$)/i.test(hostname);
}

const DEFAULT_TESTNET_RPC = "https://soroban-testnet.stellar.org";

/** docs/wire-protocol.md, Wallet-signed routes: the short spelling first, the long one as fallback. */
export const DEFAULT_WALLET_AUTH: WalletAuthRoute[] = [
  { route: "delete", audience: "delete", alternativeAudience: "object-delete", replaceAuthorization: false },
  { route: "usage", audience: "usage", alternativeAudience: "me-usage", replaceAuthorization: false },
  { route: "profile", audience: "profile", alternativeAudience: "profile-bind", replaceAuthorization: false },
  { route: "queue_ack", audience: "ack", alternativeAudience: "queue-ack", replaceAuthorization: false },
];

/**
 * Every config error goes through here or formatZod. Values are quoted with describeValue where
 * they are shown; the scrub is the second line of defence for text from libraries and the OS.
 */
function fail(source: string, field: string, message: string, hint = "fix the value and start again"): never {
  throw new StokaProxyError("config_invalid", scrubSecrets(`${source}: ${field}: ${message}`), hint);
}

/** For an unknown key: the keys that place takes, and the likely one (never the key itself: it may be a secret). */
function unknownKeyHelp(issue: ZodError["issues"][number]): string {
  // A record's key that does not fit (a route name): what the key must be.
  if (issue.code === "invalid_key") return `: ${issue.issues.map((x) => x.message).join("; ")}`;
  if (issue.code !== "unrecognized_keys") return "";
  const known = keysAt(configFileSchema, issue.path);
  if (!known) return "";
  const guess = issue.keys.length === 1 ? closestKey(issue.keys[0] ?? "", known) : undefined;
  return `${guess ? `; did you mean ${guess}?` : ""}; the keys here are: ${known.join(", ")}`;
}

function formatZod(source: string, err: ZodError): never {
  const lines = err.issues.map((i) =>
    scrubSecrets(`${source}: ${i.path.join(".") || "(top level)"}: ${i.message}${unknownKeyHelp(i)}`),
  );
  throw new StokaProxyError(
    "config_invalid",
    `invalid configuration:\n  ${lines.join("\n  ")}`,
    "see config/example.yaml for every field",
  );
}

/** Reads and validates a config file (YAML or JSON; JSON is YAML). */
export function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    fail(path, "(file)", `cannot read: ${osReason(err)}`, "check --config / STOKA_PROXY_CONFIG");
  }
  const raw = parseYamlQuietly(text, path);
  const parsed = configFileSchema.safeParse(raw ?? {});
  if (!parsed.success) formatZod(path, parsed.error);
  return parsed.data;
}

/**
 * YAML (and JSON) without printing a line of the file: the yaml library's messages and warnings
 * quote the offending source line, which may hold a secret. Errors and warnings both refuse the
 * file, by line and column only.
 */
function parseYamlQuietly(text: string, path: string): unknown {
  const doc = parseDocument(text);
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    const at = problem.linePos?.[0];
    fail(
      path,
      "(file)",
      `not valid YAML/JSON${at ? ` at line ${at.line}, column ${at.col}` : ""} (${problem.code}); ` +
        "the line is not shown because it may hold a secret",
    );
  }
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    fail(path, "(file)", `not valid YAML/JSON (${(err as Error).name}: an alias cannot be resolved)`);
  }
}

/** An OS error without the path it repeats (the path may be a misplaced secret). */
function osReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ? `${code} (${(err as NodeJS.ErrnoException).syscall ?? "read"} failed)` : "read failed";
}

export function parseListen(value: string, source: string, field: string): ListenAddress {
  const m = /^(\[([0-9a-fA-F:]+)\]|([^\s:[\]]+)):([0-9]{1,5})$/.exec(value);
  const port = Number(m?.[4]);
  if (!m || port > 65535) fail(source, field, `expected host:port, got ${describeValue(value)}`);
  return { host: m[2] ?? m[3] ?? "127.0.0.1", port };
}

function readFileField(path: string, source: string, field: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    fail(source, field, `cannot read ${describeValue(path, 256)}: ${osReason(err)}`);
  }
}

function toBudget(b: BudgetFile, index: number, source: string): Budget {
  const field = (f: string) => `budgets.${index}.${f}`;
  const amountOf = (v: string | number, f: string): bigint => {
    if (typeof v === "string" && secretKind(v))
      fail(source, field(f), `expected an amount, got ${describeValue(v)}`);
    try {
      return parseAmount(v);
    } catch (err) {
      fail(
        source,
        field(f),
        (err as Error).message,
        'write an amount as "0.05 USDC" (quoted, with the unit) or as whole atomic units (USDC has 7 decimals: 0.05 USDC = 500000)',
      );
    }
  };
  const limits: BudgetLimit[] = [];
  for (const unit of ["hour", "day", "week", "month"] as const) {
    const v = b.limits[unit];
    if (v !== undefined)
      limits.push({ period: { kind: "calendar", unit }, amount: amountOf(v, `limits.${unit}`) });
  }
  for (const [i, r] of (b.limits.rolling ?? []).entries()) {
    limits.push({
      period: { kind: "rolling", seconds: r.window_seconds },
      amount: amountOf(r.amount, `limits.rolling.${i}.amount`),
    });
  }
  const budget: Budget = { name: b.name, match: b.match, limits };
  if (b.per_request_max !== undefined) budget.perRequestMax = amountOf(b.per_request_max, "per_request_max");
  if (b.approval !== undefined)
    budget.approval = toApproval(b.approval, limits, amountOf, (f, m, h) => fail(source, field(f), m, h));
  if (limits.length === 0 && budget.perRequestMax === undefined) {
    fail(
      source,
      field("limits"),
      "a budget needs at least one limit or a per_request_max",
      'add e.g. limits: { day: "1 USDC" }',
    );
  }
  return budget;
}

/** Default wait for a person's decision (docs/configuration.md, Approvals). */
export const DEFAULT_APPROVAL_TIMEOUT_SECONDS = 60;

function toApproval(
  a: NonNullable<BudgetFile["approval"]>,
  limits: readonly BudgetLimit[],
  amountOf: (v: string | number, f: string) => bigint,
  failAt: (f: string, message: string, hint: string) => never,
): ApprovalRule {
  if (a.above === undefined && a.daily_mark === undefined)
    failAt("approval", "names neither above nor daily_mark", 'add e.g. approval: { above: "0.50 USDC" }');
  const rule: ApprovalRule = {
    timeoutMs: Math.round((a.timeout_seconds ?? DEFAULT_APPROVAL_TIMEOUT_SECONDS) * 1000),
  };
  if (a.above !== undefined) rule.above = amountOf(a.above, "approval.above");
  if (a.daily_mark !== undefined) {
    // The day's spend is the `day` limit's counter: every store keeps one per configured limit.
    if (!limits.some((l) => l.period.kind === "calendar" && l.period.unit === "day"))
      failAt(
        "approval.daily_mark",
        "needs a day limit on the same budget (the day's spend is counted there)",
        'add limits.day (e.g. day: "20 USDC"), or use approval.above',
      );
    rule.dailyMark = amountOf(a.daily_mark, "approval.daily_mark");
  }
  return rule;
}

/** A payment waiting for a person keeps its reservation: the lease must outlast the wait. */
function approvalsWithinLease(budgets: readonly Budget[], leaseSeconds: number, source: string): void {
  budgets.forEach((b, i) => {
    if (b.approval && b.approval.timeoutMs >= leaseSeconds * 1000)
      fail(
        source,
        `budgets.${i}.approval.timeout_seconds`,
        `${b.approval.timeoutMs / 1000} s is not shorter than lease_seconds (${leaseSeconds} s): the reservation would turn indeterminate while it waits`,
        "shorten the approval timeout or raise lease_seconds",
      );
  });
}

/** The Redis budget store counts in Lua numbers: exact only up to 2^53 − 1 atomic units. */
export const REDIS_MAX_LIMIT = BigInt(Number.MAX_SAFE_INTEGER);

function redisExact(budgets: Budget[], source: string): void {
  budgets.forEach((b, i) => {
    let rolling = 0;
    for (const l of b.limits) {
      const f =
        l.period.kind === "calendar" ? `limits.${l.period.unit}` : `limits.rolling.${rolling++}.amount`;
      if (l.amount > REDIS_MAX_LIMIT)
        fail(
          source,
          `budgets.${i}.${f}`,
          `${l.amount} atomic units is more than the Redis budget store counts exactly (2^53 - 1 = ${REDIS_MAX_LIMIT})`,
          "lower the limit, or use the SQLite budget store",
        );
    }
  });
}

/**
 * `paid_hosts`, each entry an authority that can match (docs/configuration.md "Paid hosts").
 * Every entry that never could (empty, a URL, a path, a bad port, a duplicate, an upstream with
 * a path) is named, all of them in one error.
 */
function toPaidHosts(entries: NonNullable<ConfigFile["paid_hosts"]>, source: string): PaidHostEntry[] {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  const out: PaidHostEntry[] = [];
  for (const [i, p] of entries.entries()) {
    const parsed = parsePaidHostAuthority(p.host);
    if (!parsed.ok) {
      problems.push(`${source}: paid_hosts.${i}.host: ${parsed.reason}`);
      continue;
    }
    const entry: PaidHostEntry = {
      host: parsed.host,
      ...(parsed.port !== undefined ? { port: parsed.port } : {}),
      payTo: p.pay_to ?? [],
      ...(p.quote_ahead?.length ? { quoteAhead: [...new Set(p.quote_ahead)] } : {}),
    };
    const key = paidHostLabel(entry);
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push(`${source}: paid_hosts.${i}.host: ${key} is a duplicate of paid_hosts.${first}.host`);
      continue;
    }
    seen.set(key, i);
    if (p.upstream !== undefined) {
      const upstream = new URL(p.upstream);
      const origin = /^https?:$/.test(upstream.protocol) ? upstream.origin : "";
      if (!origin || upstream.href !== `${origin}/`) {
        problems.push(
          `${source}: paid_hosts.${i}.upstream: ${describeValue(p.upstream, 256)} must be http(s)://host[:port] with no path, query or user`,
        );
        continue;
      }
      entry.upstream = new URL(origin);
    }
    out.push(entry);
  }
  if (problems.length > 0) {
    throw new StokaProxyError(
      "config_invalid",
      `invalid configuration:\n  ${problems.join("\n  ")}`,
      "paid_hosts[].host is name or name:port (IPv6 in brackets); the URL goes in upstream",
    );
  }
  return out;
}

/** Builds the resolved config from a parsed file, the environment and flags. */
export function resolveConfig(
  file: ConfigFile,
  source: string,
  env: NodeJS.ProcessEnv,
  flags: ConfigFlags = {},
): ProxyConfig {
  const stokaEnv = env.STOKA_ENV ?? file.stoka_env ?? "test";
  if (stokaEnv !== "test" && stokaEnv !== "prod")
    fail("env", "STOKA_ENV", `must be test or prod, got ${describeValue(stokaEnv)}`);
  const network: StellarNetwork =
    file.network ?? (stokaEnv === "prod" ? "stellar:pubnet" : "stellar:testnet");
  const info = NETWORKS[network];
  const baseUrlText = env.STOKA_BASE_URL ?? file.stoka_base_url ?? info.stokaBaseUrl;
  let baseUrl: URL;
  try {
    baseUrl = new URL(baseUrlText);
  } catch {
    fail(
      env.STOKA_BASE_URL ? "env" : source,
      env.STOKA_BASE_URL ? "STOKA_BASE_URL" : "stoka_base_url",
      `not a URL: ${describeValue(baseUrlText, 256)}`,
    );
  }

  const baseHost = normaliseHost(baseUrl.hostname);
  if (baseHost === null)
    fail(source, "stoka_base_url", `no usable host in ${describeValue(baseUrlText, 256)}`);
  const paidHosts: PaidHostEntry[] = file.paid_hosts
    ? toPaidHosts(file.paid_hosts, source)
    : [{ host: baseHost, upstream: new URL(baseUrl.origin), payTo: [] }];

  const secretFile = env.STELLAR_SECRET_FILE ?? file.wallet?.secret_file;
  let secret = env.STELLAR_SECRET?.trim() || undefined;
  const secretFrom: [string, string] = secret
    ? ["env", "STELLAR_SECRET"]
    : env.STELLAR_SECRET_FILE
      ? ["env", "the file STELLAR_SECRET_FILE names"]
      : [source, "the file wallet.secret_file names"];
  if (!secret && secretFile) secret = readFileField(secretFile, source, "wallet.secret_file").trim();
  // What `start` would refuse when it builds the signer, refused here (and so by check-config).
  if (secret && !StrKey.isValidEd25519SecretSeed(secret))
    fail(
      ...secretFrom,
      "is not a valid Stellar secret seed (the value is not shown)",
      "a seed is S followed by 55 base32 characters (A-Z, 2-7), with a valid checksum; check for a truncated copy",
    );
  const rpcUrl =
    flags.rpcUrl ??
    env.SOROBAN_RPC_URL ??
    file.wallet?.rpc_url ??
    (network === "stellar:testnet" ? DEFAULT_TESTNET_RPC : "");
  const paymentCommand = env.X_PAYMENT_CMD ?? file.wallet?.payment_command;
  if (secret && !rpcUrl && !paymentCommand) {
    fail(
      source,
      "wallet.rpc_url",
      "mainnet has no default Soroban RPC",
      "set wallet.rpc_url or SOROBAN_RPC_URL",
    );
  }
  const remoteSigner = resolveRemoteSigner(file, source);
  if (remoteSigner && (secret || paymentCommand))
    fail(
      secret ? secretFrom[0] : source,
      "wallet.remote_signer",
      `a keyless sidecar holds no key: ${secret ? "a wallet seed" : "a payment command"} is configured too`,
      "remove STELLAR_SECRET / wallet.secret_file / X_PAYMENT_CMD from the sidecar, or drop wallet.remote_signer",
    );
  if (remoteSigner && file.payment_store?.kind === "postgres")
    fail(
      source,
      "payment_store.kind",
      "a keyless sidecar keeps its own ledger in its data folder; the signer's ledger is the shared one",
      "use payment_store.kind: sqlite (the default) on the sidecar, so no payment is booked twice in one database",
    );
  const signCommand = env.STOKA_PROXY_SIGN_CMD ?? file.wallet?.sign_command;
  if (signCommand && !secret && !file.wallet?.address) {
    fail(source, "wallet.address", "a sign command needs the wallet's G-address", "set wallet.address");
  }
  const gatewayText = flags.upstream ?? file.gateway?.upstream ?? baseUrl.toString();
  let gatewayUpstream: URL;
  try {
    gatewayUpstream = new URL(gatewayText);
  } catch {
    fail(
      flags.upstream ? "flag" : source,
      flags.upstream ? "--upstream" : "gateway.upstream",
      `not a URL: ${describeValue(gatewayText, 256)}`,
    );
  }

  if (network === "stellar:pubnet") refuseTestnetMix(file, source, env, stokaEnv, paidHosts, rpcUrl);

  const budgets = (file.budgets ?? []).map((b, i) => toBudget(b, i, source));
  const storeKind = file.budget_store?.kind ?? (env.STOKA_PROXY_REDIS_URL ? "redis" : "sqlite");
  const paymentStore = resolvePaymentStore(file, source, env);
  if (storeKind === "redis") redisExact(budgets, source);
  approvalsWithinLease(budgets, file.lease_seconds ?? 300, source);
  const [listenSource, listenField] = flags.listen
    ? ["flag", "--listen"]
    : env.STOKA_PROXY_LISTEN
      ? ["env", "STOKA_PROXY_LISTEN"]
      : [source, "listen"];
  const timeouts = resolveTimeouts(file, source);
  const connections = {
    maxTotal: file.connections?.max_total ?? 1024,
    maxPerClient: file.connections?.max_per_client ?? 256,
  };
  if (connections.maxPerClient > connections.maxTotal)
    fail(source, "connections.max_per_client", "cannot be larger than connections.max_total");

  const listen = parseListen(
    flags.listen ?? env.STOKA_PROXY_LISTEN ?? file.listen ?? "127.0.0.1:8402",
    listenSource,
    listenField,
  );
  const allowAnonymous = flags.allowAnonymous ?? file.allow_anonymous ?? false;
  const open = openListenerProblem(listen.host, file.clients?.length ?? 0, allowAnonymous);
  if (open) {
    fail(
      listenSource,
      listenField,
      open,
      "configure `clients:` (token hashes, see config/example.yaml) so only your apps can use it, " +
        "or set `allow_anonymous: true` (or --allow-anonymous) if anyone who can reach it may spend the wallet",
    );
  }
  const [adminSource, adminField] = flags.adminListen
    ? ["flag", "--admin-listen"]
    : env.STOKA_PROXY_ADMIN_LISTEN
      ? ["env", "STOKA_PROXY_ADMIN_LISTEN"]
      : [source, "admin_listen"];
  const adminListen = parseListen(
    flags.adminListen ?? env.STOKA_PROXY_ADMIN_LISTEN ?? file.admin_listen ?? "127.0.0.1:9402",
    adminSource,
    adminField,
  );
  const openAdmin = openAdminProblem(
    adminListen.host,
    Boolean(env.STOKA_PROXY_METRICS_TOKEN),
    file.admin?.allow_anonymous ?? false,
  );
  if (openAdmin) {
    fail(
      adminSource,
      adminField,
      openAdmin,
      "set STOKA_PROXY_METRICS_TOKEN (Prometheus then sends it as a bearer token), keep admin_listen on " +
        "127.0.0.1, or set `admin.allow_anonymous: true` if anyone who can reach the port may read /metrics",
    );
  }
  const logLevel = resolveLogLevel(flags, env, file);
  return {
    listen,
    adminListen,
    network,
    asset: file.asset ?? info.usdcAsset,
    clientName: file.client_name ?? "default",
    paidHosts,
    gatewayUpstream,
    terms: {
      minTimeoutSeconds: file.terms?.min_timeout_seconds ?? 10,
      maxTimeoutSeconds: file.terms?.max_timeout_seconds ?? 600,
    },
    wallet: {
      ...(secret ? { secret } : {}),
      ...(file.wallet?.address ? { address: file.wallet.address } : {}),
      ...(paymentCommand ? { paymentCommand } : {}),
      paymentCommandTimeoutMs: file.wallet?.payment_command_timeout_ms ?? 15_000,
      rpcUrl,
      rpcCaPems: (file.wallet?.rpc_ca_files ?? []).map((f, i) =>
        readFileField(f, source, `wallet.rpc_ca_files.${i}`),
      ),
      ledgerCloseSeconds: file.wallet?.ledger_close_seconds ?? 5,
      prepareCache: file.wallet?.prepare_cache ?? true,
      signingTimeoutMs: file.wallet?.signing_timeout_ms ?? 15_000,
      ...(signCommand ? { signCommand } : {}),
      signCommandTimeoutMs: file.wallet?.sign_command_timeout_ms ?? 10_000,
      ...(remoteSigner ? { remoteSigner } : {}),
    },
    walletAuth: file.wallet_auth?.routes
      ? file.wallet_auth.routes.map((r) => ({
          ...(r.route ? { route: r.route } : {}),
          ...(r.method ? { method: r.method.toUpperCase() } : {}),
          ...(r.path ? { path: r.path } : {}),
          audience: r.audience,
          ...(r.alternative_audience ? { alternativeAudience: r.alternative_audience } : {}),
          replaceAuthorization: r.replace_authorization ?? false,
        }))
      : DEFAULT_WALLET_AUTH.map((r) => ({ ...r })),
    budgets,
    upstream: {
      timeoutMs: file.upstream?.timeout_ms ?? 60_000,
      connectTimeoutMs: file.upstream?.connect_timeout_ms ?? 10_000,
      caPems: (file.upstream?.ca_files ?? []).map((f, i) =>
        readFileField(f, source, `upstream.ca_files.${i}`),
      ),
    },
    maxBufferedBodyBytes: file.max_buffered_body_bytes ?? 64 * 1024 * 1024,
    maxHeaderBytes: file.max_header_bytes ?? 16 * 1024,
    timeouts,
    connections,
    dataDir: resolve(flags.dataDir ?? env.STOKA_PROXY_DATA_DIR ?? file.data_dir ?? defaultDataDir(env)),
    budgetStore:
      storeKind === "sqlite"
        ? { kind: "sqlite" }
        : {
            kind: "redis",
            url: env.STOKA_PROXY_REDIS_URL ?? file.budget_store?.redis_url ?? "redis://127.0.0.1:6379",
            prefix: file.budget_store?.redis_prefix ?? "stoka-proxy",
          },
    paymentStore,
    leaseMs: (file.lease_seconds ?? 300) * 1000,
    clients: (file.clients ?? []).map((c) => ({ name: c.name, tokenSha256: c.token_sha256 })),
    allowAnonymous,
    reconcile: { intervalSeconds: file.reconcile?.interval_seconds ?? 0, days: file.reconcile?.days ?? 2 },
    logLevel,
    metricsEnabled: file.metrics?.enabled ?? true,
    tls: {
      intercept: file.tls?.intercept ?? true,
      ...(file.tls?.ca_cert_file ? { caCertFile: file.tls.ca_cert_file } : {}),
      ...(file.tls?.ca_key_file ? { caKeyFile: file.tls.ca_key_file } : {}),
      caNameConstraints: file.tls?.ca_name_constraints ?? false,
    },
    egress: {
      allowHosts: file.egress?.allow_hosts ?? [],
      denyHosts: file.egress?.deny_hosts ?? [],
      allowPorts: file.egress?.allow_ports ?? [],
      denyPrivate: denyPrivate(file.egress?.deny_private ?? "auto", listen.host),
    },
    ...(env.STOKA_PROXY_METRICS_TOKEN ? { metricsToken: env.STOKA_PROXY_METRICS_TOKEN } : {}),
    ...(file.notifications
      ? {
          notifications: resolveNotifierConfig(
            file.notifications,
            env,
            (path) => readFileSync(path, "utf8"),
            source,
          ),
        }
      : {}),
    shutdown: { drainMs: Math.round((file.shutdown?.drain_seconds ?? 20) * 1000) },
    ...adminToken(env, file, source),
    ...signerRole(file, source, Boolean(secret || paymentCommand)),
    resilience: resolveResilience(file, source),
    payments: { stopped: file.payments?.stopped ?? false, dryRun: file.payments?.dry_run ?? false },
  };
}

function retryOf(
  r: NonNullable<NonNullable<ConfigFile["resilience"]>["retry"]> | undefined,
): Partial<RetryPolicy> {
  const out: Partial<RetryPolicy> = {};
  if (r?.max_attempts !== undefined) out.maxAttempts = r.max_attempts;
  if (r?.base_delay_ms !== undefined) out.baseDelayMs = r.base_delay_ms;
  if (r?.max_delay_ms !== undefined) out.maxDelayMs = r.max_delay_ms;
  if (r?.max_total_ms !== undefined) out.maxTotalMs = r.max_total_ms;
  if (r?.retry_after_cap_ms !== undefined) out.retryAfterCapMs = r.retry_after_cap_ms;
  return out;
}

type BreakerFile = NonNullable<NonNullable<ConfigFile["resilience"]>["circuit_breaker"]>;
function breakerOf(b: Omit<BreakerFile, "routes" | "enabled"> | undefined): Partial<CircuitSettings> {
  const out: Partial<CircuitSettings> = {};
  if (b?.failure_threshold !== undefined) out.failureThreshold = b.failure_threshold;
  if (b?.window_seconds !== undefined) out.windowMs = b.window_seconds * 1000;
  if (b?.cool_down_seconds !== undefined) out.coolDownMs = b.cool_down_seconds * 1000;
  if (b?.probe_timeout_seconds !== undefined) out.probeTimeoutMs = b.probe_timeout_seconds * 1000;
  return out;
}

const DEFAULT_HOST_RATE = 10_000;

/**
 * The adaptive rate moves between its floor and ceiling, starting at rate_per_second: a bound
 * on the wrong side is refused naming the field that was written and a value that works.
 */
function checkAdaptiveBounds(source: string, s: RateLimitSettings): void {
  const a = s.adaptive;
  if (!a) return;
  const at = "resilience.rate_limit";
  if (a.floorPerSecond > s.ratePerSecond)
    fail(
      source,
      `${at}.adaptive.floor_per_second`,
      `${a.floorPerSecond} is above rate_per_second (${s.ratePerSecond}): the limiter starts at rate_per_second and the floor is the lowest it goes after 429s`,
      `write floor_per_second: ${s.ratePerSecond} or less, or raise rate_per_second to ${a.floorPerSecond} or more`,
    );
  if (a.ceilingPerSecond < a.floorPerSecond)
    fail(
      source,
      `${at}.adaptive.ceiling_per_second`,
      `${a.ceilingPerSecond} is below floor_per_second (${a.floorPerSecond})`,
      `write ceiling_per_second: ${a.floorPerSecond} or more (it defaults to rate_per_second)`,
    );
  if (s.ratePerSecond > a.ceilingPerSecond)
    fail(
      source,
      `${at}.rate_per_second`,
      `${s.ratePerSecond} is above adaptive.ceiling_per_second (${a.ceilingPerSecond}): the adaptive rate never goes above its ceiling`,
      `write rate_per_second: ${a.ceilingPerSecond} or less, or raise ceiling_per_second to ${s.ratePerSecond}`,
    );
}

/** `resilience.*`, with the defaults of src/resilience/ and their checks as config errors. */
function resolveResilience(file: ConfigFile, source: string): ResilienceOptions {
  const r = file.resilience;
  const retryRoutes: Record<string, Partial<RetryPolicy>> = {};
  for (const [route, v] of Object.entries(r?.retry?.routes ?? {})) retryRoutes[route] = retryOf(v);
  const rl = r?.rate_limit;
  let rateLimit: RateLimitSettings | null = null;
  if (rl?.enabled ?? true) {
    const a = rl?.adaptive;
    // By default the limiter does not cap a healthy host (10 000/s): it starts high and learns
    // the host's limit from its 429s (AIMD). A configured rate is a hard cap from the start.
    const rate = rl?.rate_per_second ?? DEFAULT_HOST_RATE;
    rateLimit = {
      ratePerSecond: rate,
      burst: rl?.burst ?? Math.max(rate, DEFAULT_RATE_LIMIT.burst),
      maxWaitMs: rl?.max_wait_ms ?? DEFAULT_RATE_LIMIT.maxWaitMs,
      jitterRatio: rl?.jitter ?? DEFAULT_RATE_LIMIT.jitterRatio,
      retryAfterCapMs: rl?.retry_after_cap_ms ?? DEFAULT_RATE_LIMIT.retryAfterCapMs,
      ...((a?.enabled ?? true)
        ? {
            adaptive: {
              floorPerSecond: a?.floor_per_second ?? Math.min(DEFAULT_ADAPTIVE.floorPerSecond, rate),
              ceilingPerSecond: a?.ceiling_per_second ?? rate,
              decreaseFactor: a?.decrease_factor ?? DEFAULT_ADAPTIVE.decreaseFactor,
              increasePerSecond: a?.increase_per_second ?? DEFAULT_ADAPTIVE.increasePerSecond,
              increaseIntervalMs: a?.increase_interval_ms ?? DEFAULT_ADAPTIVE.increaseIntervalMs,
              decreaseCooldownMs: a?.decrease_cooldown_ms ?? DEFAULT_ADAPTIVE.decreaseCooldownMs,
            },
          }
        : {}),
    };
    checkAdaptiveBounds(source, rateLimit);
    const bad = checkRateLimitSettings(rateLimit);
    if (bad) fail(source, "resilience.rate_limit", bad);
  }
  const cb = r?.circuit_breaker;
  const breaker = (cb?.enabled ?? true) ? { ...DEFAULT_CIRCUIT, ...breakerOf(cb) } : null;
  const breakerRoutes: Record<string, Partial<CircuitSettings>> = {};
  for (const [route, v] of Object.entries(cb?.routes ?? {})) {
    breakerRoutes[route] = breakerOf(v);
    const bad = checkCircuitSettings({ ...DEFAULT_CIRCUIT, ...breaker, ...breakerRoutes[route] });
    if (bad) fail(source, `resilience.circuit_breaker.routes.${route}`, bad);
  }
  if (breaker) {
    const bad = checkCircuitSettings(breaker);
    if (bad) fail(source, "resilience.circuit_breaker", bad);
  }
  const id = r?.idempotency;
  const pr = r?.paid_resend;
  return {
    retry: { ...DEFAULT_RETRY_POLICY, ...retryOf(r?.retry) },
    retryRoutes,
    rateLimit,
    breaker,
    breakerRoutes,
    idempotency:
      (id?.enabled ?? true)
        ? {
            maxEntries: id?.max_entries ?? DEFAULT_IDEMPOTENCY.maxEntries,
            inFlightTtlMs: (id?.in_flight_ttl_seconds ?? DEFAULT_IDEMPOTENCY.inFlightTtlMs / 1000) * 1000,
            indeterminateTtlMs:
              (id?.indeterminate_ttl_seconds ?? DEFAULT_IDEMPOTENCY.indeterminateTtlMs / 1000) * 1000,
          }
        : null,
    resend: {
      ...DEFAULT_RESEND_POLICY,
      ...(pr?.max_resends !== undefined ? { maxResends: pr.max_resends } : {}),
      ...(pr?.safety_margin_ms !== undefined ? { safetyMarginMs: pr.safety_margin_ms } : {}),
      ...(pr?.retry_after_cap_ms !== undefined ? { retryAfterCapMs: pr.retry_after_cap_ms } : {}),
    },
  };
}

/** A token read from a file: trimmed, and at least 16 characters (a guessable one is refused). */
function tokenFromFile(path: string, source: string, field: string): string {
  const token = readFileField(path, source, field).trim();
  if (token.length < 16) fail(source, field, "the token must be at least 16 characters (it is not shown)");
  return token;
}

/** `wallet.remote_signer`, files read (docs/configuration.md, Keyless sidecars). */
function resolveRemoteSigner(file: ConfigFile, source: string): RemoteSignerOptions | undefined {
  const r = file.wallet?.remote_signer;
  if (!r) return undefined;
  const url = new URL(r.url);
  // A bearer token over plain HTTP is readable by anyone on the path: HTTPS only.
  if (url.protocol !== "https:")
    fail(
      source,
      "wallet.remote_signer.url",
      "must be an https:// URL",
      "point it at the signer's HTTPS listener",
    );
  if ((r.client_cert_file === undefined) !== (r.client_key_file === undefined))
    fail(source, "wallet.remote_signer", "give both client_cert_file and client_key_file, or neither");
  return {
    url,
    token: tokenFromFile(r.token_file, source, "wallet.remote_signer.token_file"),
    caPems: r.ca_file ? [readFileField(r.ca_file, source, "wallet.remote_signer.ca_file")] : [],
    ...(r.client_cert_file
      ? { clientCertPem: readFileField(r.client_cert_file, source, "wallet.remote_signer.client_cert_file") }
      : {}),
    ...(r.client_key_file
      ? { clientKeyPem: readFileField(r.client_key_file, source, "wallet.remote_signer.client_key_file") }
      : {}),
    timeoutMs: r.timeout_ms ?? 15_000,
  };
}

/** Wallet-auth routes a signer token may have signed when it does not say. */
const DEFAULT_SIGNER_WALLET_AUTH_ROUTES = ["delete", "usage", "profile", "queue_ack"];

/** `signer:`, files read; tokens kept only as SHA-256 (docs/configuration.md, Signer role). */
function signerRole(file: ConfigFile, source: string, hasKey: boolean): { signer?: SignerOptions } {
  const s = file.signer;
  if (!s) return {};
  if (!hasKey)
    fail(
      source,
      "signer",
      "the signer role signs with this process's wallet, and none is configured",
      "set STELLAR_SECRET (or wallet.secret_file) on the signer",
    );
  const tokens = s.tokens.map((t, i) => ({
    client: t.client,
    tokenSha256:
      t.token_sha256 ??
      createHash("sha256")
        .update(tokenFromFile(t.token_file as string, source, `signer.tokens.${i}.token_file`), "utf8")
        .digest("hex"),
    walletAuthRoutes: t.wallet_auth_routes ?? DEFAULT_SIGNER_WALLET_AUTH_ROUTES,
  }));
  const seen = new Set<string>();
  tokens.forEach((t, i) => {
    if (seen.has(t.tokenSha256)) fail(source, `signer.tokens.${i}`, "the same token is listed twice");
    seen.add(t.tokenSha256);
  });
  return {
    signer: {
      listen: parseListen(s.listen, source, "signer.listen"),
      certPem: readFileField(s.tls.cert_file, source, "signer.tls.cert_file"),
      keyPem: readFileField(s.tls.key_file, source, "signer.tls.key_file"),
      ...(s.tls.client_ca_file
        ? { clientCaPem: readFileField(s.tls.client_ca_file, source, "signer.tls.client_ca_file") }
        : {}),
      tokens,
    },
  };
}

/** The admin token: env first, else the file named by admin.token_file; a short one is refused. */
function adminToken(env: NodeJS.ProcessEnv, file: ConfigFile, source: string): { adminToken?: string } {
  const fromEnv = env.STOKA_PROXY_ADMIN_TOKEN?.trim();
  const path = file.admin?.token_file;
  const token = fromEnv || (path ? readFileField(path, source, "admin.token_file").trim() : "");
  if (!token) return {};
  if (token.length < 16)
    fail(
      fromEnv ? "env" : source,
      fromEnv ? "STOKA_PROXY_ADMIN_TOKEN" : "admin.token_file",
      "the admin token must be at least 16 characters",
      "use a long random token, e.g. `openssl rand -hex 32`",
    );
  return { adminToken: token };
}

/**
 * `payment_store` (docs/configuration.md "Payment store"): the SQLite file, or a PostgreSQL
 * database reached at STOKA_PROXY_DATABASE_URL, payment_store.url_file or payment_store.url, in
 * that order. The URL may hold a password, so no message here ever quotes it.
 */
function resolvePaymentStore(
  file: ConfigFile,
  source: string,
  env: NodeJS.ProcessEnv,
): ProxyConfig["paymentStore"] {
  const p = file.payment_store;
  if ((p?.kind ?? "sqlite") === "sqlite") {
    if (p?.url !== undefined || p?.url_file !== undefined || p?.pool_max !== undefined)
      fail(
        source,
        p?.url !== undefined
          ? "payment_store.url"
          : p?.url_file !== undefined
            ? "payment_store.url_file"
            : "payment_store.pool_max",
        "is only read with payment_store.kind: postgres",
        "set payment_store.kind: postgres, or remove the field to keep the ledger in data_dir",
      );
    return { kind: "sqlite" };
  }
  // One store holds the ledger and the budgets together: a second budget engine beside it
  // would split a reservation from the row that explains it.
  const budgetKind = file.budget_store?.kind ?? (env.STOKA_PROXY_REDIS_URL ? "redis" : undefined);
  if (budgetKind !== undefined)
    fail(
      source,
      file.budget_store?.kind !== undefined ? "budget_store.kind" : "STOKA_PROXY_REDIS_URL",
      `a ${budgetKind} budget store cannot be used with payment_store.kind: postgres (PostgreSQL keeps the budgets with the ledger)`,
      file.budget_store !== undefined
        ? "remove budget_store from the config: every replica on the database shares its budgets"
        : "unset STOKA_PROXY_REDIS_URL: every replica on the database shares its budgets",
    );
  let url: string | undefined;
  let field: string;
  if (env.STOKA_PROXY_DATABASE_URL?.trim()) {
    url = env.STOKA_PROXY_DATABASE_URL.trim();
    field = "STOKA_PROXY_DATABASE_URL";
  } else if (p?.url_file !== undefined) {
    url = readFileField(p.url_file, source, "payment_store.url_file").trim();
    field = "payment_store.url_file";
  } else {
    url = p?.url;
    field = "payment_store.url";
  }
  if (!url)
    fail(
      source,
      "payment_store.url",
      "payment_store.kind: postgres needs the database's URL",
      "set STOKA_PROXY_DATABASE_URL (or payment_store.url_file) to postgres://user:password@host:5432/database",
    );
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || !/^postgres(ql)?:$/.test(parsed.protocol) || !parsed.hostname)
    fail(
      field.startsWith("STOKA") ? "env" : source,
      field,
      "is not a postgres://user[:password]@host[:port]/database URL (the value is not shown: it may hold a password)",
      "give the URL as postgres://user:password@host:5432/database, the password percent-encoded",
    );
  return { kind: "postgres", url, poolMax: p?.pool_max ?? 10 };
}

/** The log level from a flag, env or the file (the file's is checked by the schema). */
function resolveLogLevel(flags: ConfigFlags, env: NodeJS.ProcessEnv, file: ConfigFile): string {
  const [value, from, field] = flags.logLevel
    ? [flags.logLevel, "flag", "--log-level"]
    : env.STOKA_PROXY_LOG_LEVEL
      ? [env.STOKA_PROXY_LOG_LEVEL, "env", "STOKA_PROXY_LOG_LEVEL"]
      : [file.log_level ?? "info", "", ""];
  if (from && !(LOG_LEVELS as readonly string[]).includes(value))
    fail(from, field, `must be one of ${LOG_LEVELS.join(", ")}, got ${describeValue(value)}`);
  return value;
}

/**
 * A mainnet configuration that points at Stellar's test network would sign real-USDC
 * payments for a testnet host, or ask a testnet RPC to submit mainnet transactions: neither
 * can work, and the first may pay the wrong party. Both fields are named.
 */
function refuseTestnetMix(
  file: ConfigFile,
  source: string,
  env: NodeJS.ProcessEnv,
  stokaEnv: string,
  paidHosts: PaidHostEntry[],
  rpcUrl: string,
): void {
  const why = env.STOKA_ENV
    ? `env STOKA_ENV=${stokaEnv}`
    : file.network
      ? `${source}: network: ${file.network}`
      : `${source}: stoka_env: ${stokaEnv}`;
  const hint =
    "use testnet hosts and RPC with STOKA_ENV=test (network stellar:testnet), or mainnet ones with prod";
  const problems: string[] = [];
  paidHosts.forEach((p, i) => {
    const [host, upstream] = file.paid_hosts
      ? [`${source}: paid_hosts.${i}.host`, `${source}: paid_hosts.${i}.upstream`]
      : env.STOKA_BASE_URL
        ? ["env STOKA_BASE_URL", "env STOKA_BASE_URL"]
        : [`${source}: stoka_base_url`, `${source}: stoka_base_url`];
    if (looksTestnet(p.host)) problems.push(`${host} ${p.host} is a testnet host`);
    else if (p.upstream && looksTestnet(p.upstream.hostname))
      problems.push(`${upstream} ${p.upstream.hostname} is a testnet host`);
  });
  if (rpcUrl) {
    let host = "";
    try {
      host = new URL(rpcUrl).hostname;
    } catch {
      // an unreadable URL is refused by the schema or by the signer
    }
    if (looksTestnet(host)) {
      const field = env.SOROBAN_RPC_URL ? "env SOROBAN_RPC_URL" : `${source}: wallet.rpc_url`;
      problems.push(`${field} ${host} is a testnet RPC`);
    }
  }
  if (file.asset === NETWORKS["stellar:testnet"].usdcAsset) problems.push(`${source}: asset is testnet USDC`);
  if (problems.length > 0) {
    throw new StokaProxyError(
      "config_invalid",
      scrubSecrets(
        `invalid configuration: ${why} (stellar:pubnet, real USDC) but:\n  ${problems.join("\n  ")}`,
      ),
      hint,
    );
  }
}

/** Client-side timeouts in ms (Node's server options take integer ms). */
function resolveTimeouts(file: ConfigFile, source: string): ProxyConfig["timeouts"] {
  const ms = (s: number | undefined, fallback: number) => Math.max(1, Math.round((s ?? fallback) * 1000));
  const t = file.timeouts;
  const timeouts = {
    headersMs: ms(t?.headers_seconds, 30),
    requestMs: ms(t?.request_seconds, 300),
    clientIdleMs: ms(t?.client_idle_seconds, 30),
    tunnelIdleMs: ms(t?.tunnel_idle_seconds, 300),
  };
  // Node refuses a header timeout longer than the request timeout (the head is part of it).
  if (timeouts.headersMs > timeouts.requestMs)
    fail(source, "timeouts.headers_seconds", "cannot be longer than timeouts.request_seconds");
  return timeouts;
}

/** `auto`: deny private and loopback targets unless the listener itself is loopback-only. */
function denyPrivate(setting: boolean | "auto", listenHost: string): boolean {
  if (setting !== "auto") return setting;
  return !(listenHost === "localhost" || listenHost === "::1" || /^127\./.test(listenHost));
}

/** Loads config from --config / STOKA_PROXY_CONFIG (optional), env and flags. */
export function loadConfig(env: NodeJS.ProcessEnv, flags: ConfigFlags = {}): ProxyConfig {
  const path = flags.config ?? env.STOKA_PROXY_CONFIG;
  const file = path ? readConfigFile(path) : {};
  return resolveConfig(file, path ?? "(defaults)", env, flags);
}
