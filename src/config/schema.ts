import { z } from "zod";

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
        signing_timeout_ms: z.number().int().positive().optional(),
        sign_command: z.string().optional(),
        sign_command_timeout_ms: z.number().int().positive().optional(),
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
      .object({ kind: z.enum(["sqlite", "postgres"]).optional() })
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
    log_level: z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
        error: "one of fatal, error, warn, info, debug, trace, silent",
      })
      .optional(),
  })
  .strict();

export type ConfigFile = z.infer<typeof configFileSchema>;
export type BudgetFile = z.infer<typeof budget>;
