import { z } from "zod";
import { notificationsFileSchema } from "../operator/notify/config.js";

/**
 * The config file's shape (YAML or JSON), validated at start-up. Secrets never live here: only
 * paths to secret files; seeds come from env (docs/configuration.md documents every field).
 */
// Any number is let through here so load.ts can say what to write instead of 0.05 (parseAmount).
const amount = z.union([z.string(), z.number()], {
  error: 'an amount: "0.05 USDC" (quoted, with the unit) or whole atomic units (USDC has 7 decimals)',
});
const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^\s:[\]]+):[0-9]{1,5}$/, "expected host:port, e.g. 127.0.0.1:8402");

/** Seconds; fractions allowed (0.5), so tests and tight deployments can go below one second. */
const seconds = z.number().positive().max(86_400);

const limits = z
  .object({
    hour: amount.optional(),
    day: amount.optional(),
    week: amount.optional(),
    month: amount.optional(),
    rolling: z.array(z.object({ window_seconds: z.number().int().positive(), amount }).strict()).optional(),
  })
  .strict();

const budget = z
  .object({
    name: z
      .string()
      .regex(/^[a-zA-Z0-9_.-]{1,64}$/, "use letters, digits, _ . - (it becomes a metric label)"),
    match: z
      .object({
        hosts: z.array(z.string()).optional(),
        methods: z.array(z.string()).optional(),
        paths: z.array(z.string()).optional(),
        routes: z.array(z.string()).optional(),
        clients: z.array(z.string()).optional(),
      })
      .strict()
      .default({}),
    per_request_max: amount.optional(),
    limits: limits.default({}),
    /** A person approves payments above these marks (docs/configuration.md, Approvals). */
    approval: z
      .object({
        above: amount.optional(),
        daily_mark: amount.optional(),
        timeout_seconds: z.number().positive().max(3_600).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const ms = z.number().int().nonnegative().max(86_400_000);

/** Retry settings of unpaid attempts (src/resilience/retry-policy.ts); per route under `routes`. */
const retryFields = {
  max_attempts: z.number().int().min(1).max(10).optional(),
  base_delay_ms: ms.optional(),
  max_delay_ms: ms.optional(),
  max_total_ms: ms.optional(),
  retry_after_cap_ms: ms.optional(),
};

const breakerFields = {
  failure_threshold: z.number().int().min(1).max(1000).optional(),
  window_seconds: seconds.optional(),
  cool_down_seconds: seconds.optional(),
  probe_timeout_seconds: seconds.optional(),
};

const routeName = z.string().regex(/^[a-z0-9_]{1,40}$/, "a route name (store, retrieve, queue_push, …)");

const resilience = z
  .object({
    retry: z
      .object({
        ...retryFields,
        routes: z.record(routeName, z.object(retryFields).strict()).optional(),
      })
      .strict()
      .optional(),
    rate_limit: z
      .object({
        enabled: z.boolean().optional(),
        rate_per_second: z.number().positive().max(100_000).optional(),
        burst: z.number().min(1).max(100_000).optional(),
        max_wait_ms: ms.optional(),
        jitter: z.number().min(0).max(1).optional(),
        retry_after_cap_ms: ms.optional(),
        adaptive: z
          .object({
            enabled: z.boolean().optional(),
            floor_per_second: z.number().positive().optional(),
            ceiling_per_second: z.number().positive().optional(),
            decrease_factor: z.number().gt(0).lt(1).optional(),
            increase_per_second: z.number().nonnegative().optional(),
            increase_interval_ms: ms.optional(),
            decrease_cooldown_ms: ms.optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    circuit_breaker: z
      .object({
        enabled: z.boolean().optional(),
        ...breakerFields,
        routes: z.record(routeName, z.object(breakerFields).strict()).optional(),
      })
      .strict()
      .optional(),
    idempotency: z
      .object({
        enabled: z.boolean().optional(),
        max_entries: z.number().int().min(1).max(1_000_000).optional(),
        in_flight_ttl_seconds: seconds.optional(),
        indeterminate_ttl_seconds: z
          .number()
          .positive()
          .max(30 * 86_400)
          .optional(),
      })
      .strict()
      .optional(),
    paid_resend: z
      .object({
        max_resends: z.number().int().min(0).max(5).optional(),
        safety_margin_ms: ms.optional(),
        retry_after_cap_ms: ms.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const configFileSchema = z
  .object({
    listen: hostPort.optional(),
    admin_listen: hostPort.optional(),
    stoka_env: z.enum(["test", "prod"]).optional(),
    stoka_base_url: z.url().optional(),
    network: z.enum(["stellar:testnet", "stellar:pubnet"]).optional(),
    asset: z
      .string()
      .regex(/^C[A-Z2-7]{55}$/, "a Stellar contract address (C…)")
      .optional(),
    client_name: z.string().optional(),
    paid_hosts: z
      .array(
        z
          .object({
            // name or name:port; checked (every entry named) in load.ts
            host: z.string(),
            upstream: z.url().optional(),
            pay_to: z.array(z.string().regex(/^G[A-Z2-7]{55}$/, "a Stellar account (G…)")).optional(),
            // Routes paid with the first request, priced from the manifest (docs/configuration.md, Quote-ahead).
            quote_ahead: z.array(z.enum(["store", "update", "retrieve"])).optional(),
          })
          .strict(),
      )
      .optional(),
    gateway: z.object({ upstream: z.url().optional() }).strict().optional(),
    terms: z
      .object({
        min_timeout_seconds: z.number().int().positive().optional(),
        max_timeout_seconds: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
    wallet: z
      .object({
        secret_file: z.string().optional(),
        address: z
          .string()
          .regex(/^G[A-Z2-7]{55}$/, "a Stellar account (G…)")
          .optional(),
        payment_command: z.string().optional(),
        payment_command_timeout_ms: z.number().int().positive().optional(),
        rpc_url: z.url().optional(),
        rpc_ca_files: z.array(z.string()).optional(),
        ledger_close_seconds: z.number().int().min(1).max(60).optional(),
        prepare_cache: z.boolean().optional(),
        signing_timeout_ms: z.number().int().positive().optional(),
        sign_command: z.string().optional(),
        sign_command_timeout_ms: z.number().int().positive().optional(),
        /** A keyless sidecar: the signer role signs (docs/configuration.md, Keyless sidecars). */
        remote_signer: z
          .object({
            url: z.url(),
            token_file: z.string(),
            ca_file: z.string().optional(),
            client_cert_file: z.string().optional(),
            client_key_file: z.string().optional(),
            timeout_ms: z.number().int().positive().max(120_000).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    /** The signer role for keyless sidecars (docs/configuration.md, Signer role). */
    signer: z
      .object({
        listen: z.string(),
        tls: z
          .object({ cert_file: z.string(), key_file: z.string(), client_ca_file: z.string().optional() })
          .strict(),
        tokens: z
          .array(
            z
              .object({
                client: z
                  .string()
                  .regex(/^[a-zA-Z0-9_.-]{1,64}$/, "use letters, digits, _ . - (it becomes a metric label)"),
                token_file: z.string().optional(),
                token_sha256: z
                  .string()
                  .regex(/^[0-9a-f]{64}$/, "the SHA-256 of the token, lowercase hex")
                  .optional(),
                wallet_auth_routes: z.array(z.string()).optional(),
              })
              .strict()
              .refine((t) => (t.token_file === undefined) !== (t.token_sha256 === undefined), {
                message: "give exactly one of token_file and token_sha256",
              }),
          )
          .min(1),
      })
      .strict()
      .optional(),
    budgets: z.array(budget).optional(),
    wallet_auth: z
      .object({
        routes: z
          .array(
            z
              .object({
                route: z.string().optional(),
                method: z.string().optional(),
                path: z.string().optional(),
                audience: z.string().min(1),
                alternative_audience: z.string().min(1).optional(),
                replace_authorization: z.boolean().optional(),
              })
              .strict()
              .refine((r) => r.route !== undefined || (r.method !== undefined && r.path !== undefined), {
                message: "give a route name, or both method and path",
              }),
          )
          .optional(),
      })
      .strict()
      .optional(),
    upstream: z
      .object({
        timeout_ms: z.number().int().positive().optional(),
        connect_timeout_ms: z.number().int().positive().optional(),
        ca_files: z.array(z.string()).optional(),
      })
      .strict()
      .optional(),
    max_buffered_body_bytes: z.number().int().positive().optional(),
    max_header_bytes: z
      .number()
      .int()
      .min(1024)
      .max(1024 * 1024)
      .optional(),
    timeouts: z
      .object({
        headers_seconds: seconds.optional(),
        request_seconds: seconds.optional(),
        client_idle_seconds: seconds.optional(),
        tunnel_idle_seconds: seconds.optional(),
      })
      .strict()
      .optional(),
    connections: z
      .object({
        max_total: z.number().int().positive().optional(),
        max_per_client: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
    data_dir: z.string().optional(),
    budget_store: z
      .object({
        kind: z.enum(["sqlite", "redis"]).optional(),
        redis_url: z
          .string()
          .regex(/^rediss?:\/\//, "a redis:// or rediss:// URL")
          .optional(),
        redis_prefix: z
          .string()
          .regex(/^[A-Za-z0-9:_.-]{1,64}$/)
          .optional(),
      })
      .strict()
      .optional(),
    payment_store: z
      .object({
        kind: z.enum(["sqlite", "postgres"]).optional(),
        url: z
          .string()
          .regex(/^postgres(ql)?:\/\//, "a postgres:// or postgresql:// URL")
          .optional(),
        url_file: z.string().optional(),
        pool_max: z.number().int().min(1).max(100).optional(),
      })
      .strict()
      .optional(),
    lease_seconds: z.number().int().positive().optional(),
    clients: z
      .array(
        z
          .object({
            name: z
              .string()
              .regex(/^[a-zA-Z0-9_.-]{1,64}$/, "use letters, digits, _ . - (it becomes a metric label)"),
            token_sha256: z
              .string()
              .regex(/^[0-9a-f]{64}$/, "the SHA-256 of the client's token, lowercase hex"),
          })
          .strict(),
      )
      .optional(),
    /** Listen beyond loopback without `clients` (the proxy then pays for anyone who reaches it). */
    allow_anonymous: z.boolean().optional(),
    reconcile: z
      .object({
        interval_seconds: z.number().int().nonnegative().optional(),
        days: z.number().int().min(1).max(90).optional(),
      })
      .strict()
      .optional(),
    tls: z
      .object({
        intercept: z.boolean().optional(),
        ca_cert_file: z.string().optional(),
        ca_key_file: z.string().optional(),
        ca_name_constraints: z.boolean().optional(),
      })
      .strict()
      .optional(),
    egress: z
      .object({
        allow_hosts: z.array(z.string()).optional(),
        deny_hosts: z.array(z.string()).optional(),
        allow_ports: z.array(z.number().int().min(1).max(65535)).optional(),
        deny_private: z.union([z.boolean(), z.literal("auto")]).optional(),
      })
      .strict()
      .optional(),
    metrics: z.object({ enabled: z.boolean().optional() }).strict().optional(),
    /** Webhooks for budget thresholds, indeterminate payments, refused terms, … (docs/webhooks.md). */
    notifications: notificationsFileSchema.optional(),
    /** docs/operations.md, Stopping and reloading. */
    shutdown: z
      .object({ drain_seconds: z.number().nonnegative().max(3600).optional() })
      .strict()
      .optional(),
    admin: z
      .object({
        /** Bearer token file for POST /admin/reload (docs/operations.md). */
        token_file: z.string().optional(),
        /** The admin listener beyond loopback without STOKA_PROXY_METRICS_TOKEN, asked for explicitly. */
        allow_anonymous: z.boolean().optional(),
      })
      .strict()
      .optional(),
    resilience: resilience.optional(),
    /** Start-up state of the kill switch and dry run (both flip at run time: admin endpoints, SIGUSR2). */
    payments: z
      .object({ stopped: z.boolean().optional(), dry_run: z.boolean().optional() })
      .strict()
      .optional(),
    log_level: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
        error: "one of fatal, error, warn, info, debug, trace, silent",
      })
      .optional(),
  })
  .strict();

export type ConfigFile = z.infer<typeof configFileSchema>;
export type BudgetFile = z.infer<typeof budget>;
