import { z } from "zod";
import { StokaProxyError } from "../../errors.js";
import { DEFAULT_RETRY } from "./backoff.js";
import { EVENT_NAMES, SEVERITIES } from "./events.js";
import type { NotifierConfig, NotifierDestination } from "./notifier.js";
import type { NotificationRule } from "./rules.js";

/**
 * The `notifications:` section of the config file, and how it becomes a NotifierConfig.
 * A destination's secret comes from an environment variable (`secret_env`) or a file
 * (`secret_file`, e.g. a mounted Kubernetes secret), never from the config text: the schema
 * has no field for it, and a URL with user:password in it is refused.
 *
 *   notifications:
 *     destinations:
 *       - name: ops
 *         url: https://hooks.example.com/stoka
 *         secret_env: STOKA_WEBHOOK_SECRET
 *         timeout_seconds: 5
 *     rules:
 *       - events: [budget.threshold]
 *         thresholds: [80, 100]
 *         min_severity: warning
 *         destinations: [ops]          # absent: every destination
 *       - events: [payment.indeterminate, reconcile.mismatch]
 *     queue_size: 1000                 # per destination
 *     dedup_window_seconds: 300
 *     retry: { max_attempts: 6, base_delay_seconds: 1, max_delay_seconds: 60, max_elapsed_seconds: 600 }
 */
const name = z
  .string()
  .regex(/^[a-zA-Z0-9_.-]{1,64}$/, "use letters, digits, _ . - (it becomes a metric label)");
const seconds = z.number().positive().max(86_400);

export const notificationsFileSchema = z
  .object({
    destinations: z
      .array(
        z
          .object({
            name,
            url: z.url({ protocol: /^https?$/ }),
            secret_env: z
              .string()
              .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name")
              .optional(),
            secret_file: z.string().min(1).optional(),
            timeout_seconds: seconds.optional(),
          })
          .strict(),
      )
      .default([]),
    rules: z
      .array(
        z
          .object({
            events: z.array(z.enum(EVENT_NAMES)).min(1),
            min_severity: z.enum(SEVERITIES).optional(),
            thresholds: z.array(z.number().positive().max(1000)).min(1).optional(),
            destinations: z.array(name).min(1).optional(),
          })
          .strict(),
      )
      .default([]),
    queue_size: z.number().int().min(1).max(100_000).optional(),
    dedup_window_seconds: z.number().min(0).max(86_400).optional(),
    retry: z
      .object({
        max_attempts: z.number().int().min(1).max(20).optional(),
        base_delay_seconds: seconds.optional(),
        max_delay_seconds: seconds.optional(),
        max_elapsed_seconds: seconds.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type NotificationsFile = z.infer<typeof notificationsFileSchema>;

export const NOTIFIER_DEFAULTS = { queueSize: 1000, dedupWindowMs: 300_000, timeoutMs: 5_000 } as const;

/** An HMAC key shorter than this is too easy to guess. */
export const MIN_SECRET_LENGTH = 16;

function invalid(source: string, field: string, message: string, hint: string): never {
  throw new StokaProxyError("config_invalid", `${source}: notifications.${field}: ${message}`, hint);
}

/**
 * Resolves secrets and checks the references between rules and destinations. `readFile` is
 * the caller's (so a test or the wiring decides how files are read); its error text is never
 * repeated, since it may quote a path that is a misplaced secret.
 */
export function resolveNotifierConfig(
  file: NotificationsFile,
  env: Readonly<Record<string, string | undefined>>,
  readFile: (path: string) => string,
  source = "config",
): NotifierConfig {
  const seen = new Set<string>();
  const destinations: NotifierDestination[] = file.destinations.map((d, i) => {
    const at = `destinations[${i}]`;
    if (seen.has(d.name))
      invalid(source, `${at}.name`, `"${d.name}" is used twice`, "give each destination its own name");
    seen.add(d.name);
    const url = new URL(d.url);
    if (url.username !== "" || url.password !== "") {
      invalid(
        source,
        `${at}.url`,
        "the URL carries a user name or password",
        "put credentials in the receiver's check of the signature, not in the URL",
      );
    }
    if ((d.secret_env === undefined) === (d.secret_file === undefined)) {
      invalid(
        source,
        at,
        "set exactly one of secret_env or secret_file",
        "the signing secret comes from the environment or a file, never the config",
      );
    }
    let secret: string;
    if (d.secret_env !== undefined) {
      const value = env[d.secret_env]?.trim();
      if (!value) {
        invalid(
          source,
          `${at}.secret_env`,
          `the environment variable ${d.secret_env} is not set`,
          `export ${d.secret_env} with the webhook's signing secret`,
        );
      }
      secret = value;
    } else {
      try {
        secret = readFile(d.secret_file as string).trim();
      } catch {
        invalid(
          source,
          `${at}.secret_file`,
          "cannot read the file",
          "check that the file exists and the proxy may read it",
        );
      }
    }
    if (secret.length < MIN_SECRET_LENGTH) {
      invalid(
        source,
        d.secret_env !== undefined ? `${at}.secret_env` : `${at}.secret_file`,
        `the secret is shorter than ${MIN_SECRET_LENGTH} characters`,
        "use a long random secret, e.g. `openssl rand -hex 32`",
      );
    }
    return {
      name: d.name,
      url: d.url,
      secret,
      timeoutMs: Math.round((d.timeout_seconds ?? NOTIFIER_DEFAULTS.timeoutMs / 1000) * 1000),
    };
  });
  const rules: NotificationRule[] = file.rules.map((r, i) => {
    for (const dest of r.destinations ?? []) {
      if (!seen.has(dest))
        invalid(
          source,
          `rules[${i}].destinations`,
          `no destination is named "${dest}"`,
          "name one from destinations",
        );
    }
    if (r.thresholds !== undefined && !r.events.includes("budget.threshold")) {
      invalid(
        source,
        `rules[${i}].thresholds`,
        "thresholds apply to budget.threshold only",
        "add budget.threshold to events or remove thresholds",
      );
    }
    return {
      events: r.events,
      minSeverity: r.min_severity ?? "info",
      ...(r.thresholds === undefined ? {} : { thresholds: r.thresholds }),
      ...(r.destinations === undefined ? {} : { destinations: r.destinations }),
    };
  });
  if (rules.length > 0 && destinations.length === 0) {
    invalid(source, "rules", "rules are set but no destinations", "add a destination or remove the rules");
  }
  const retry = file.retry ?? {};
  const ms = (s: number | undefined, fallback: number) => (s === undefined ? fallback : Math.round(s * 1000));
  const policy = {
    maxAttempts: retry.max_attempts ?? DEFAULT_RETRY.maxAttempts,
    baseDelayMs: ms(retry.base_delay_seconds, DEFAULT_RETRY.baseDelayMs),
    maxDelayMs: ms(retry.max_delay_seconds, DEFAULT_RETRY.maxDelayMs),
    maxElapsedMs: ms(retry.max_elapsed_seconds, DEFAULT_RETRY.maxElapsedMs),
  };
  if (policy.maxDelayMs < policy.baseDelayMs) {
    invalid(source, "retry", "max_delay_seconds is below base_delay_seconds", "raise max_delay_seconds");
  }
  return {
    destinations,
    rules,
    queueSize: file.queue_size ?? NOTIFIER_DEFAULTS.queueSize,
    dedupWindowMs: ms(file.dedup_window_seconds, NOTIFIER_DEFAULTS.dedupWindowMs),
    retry: policy,
  };
}
