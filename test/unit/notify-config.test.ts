import { describe, expect, it } from "vitest";
import { StokaProxyError } from "../../src/errors.js";
import { notificationsFileSchema, resolveNotifierConfig } from "../../src/operator/notify/config.js";

/** The `notifications:` section: secrets from env or files only; references checked. */

const SECRET = "s3cret-webhook-key-0123456789";
const env = { HOOK_SECRET: SECRET, SHORT: "short" };
const files: Record<string, string> = { "/run/secrets/hook": `${SECRET}\n` };
const readFile = (p: string) => {
  const v = files[p];
  if (v === undefined) throw new Error(`ENOENT: no such file or directory, open '${p}'`);
  return v;
};

const parse = (raw: unknown) => notificationsFileSchema.parse(raw);
const resolve = (raw: unknown) => resolveNotifierConfig(parse(raw), env, readFile, "proxy.yaml");
const dest = (over: Record<string, unknown> = {}) => ({
  name: "ops",
  url: "https://hooks.example.com/x",
  secret_env: "HOOK_SECRET",
  ...over,
});

describe("notifications config", () => {
  it("resolves a full section, with defaults filled in", () => {
    const c = resolve({
      destinations: [
        dest(),
        {
          name: "audit",
          url: "http://127.0.0.1:9000/hook",
          secret_file: "/run/secrets/hook",
          timeout_seconds: 2.5,
        },
      ],
      rules: [
        {
          events: ["budget.threshold"],
          thresholds: [50, 100],
          min_severity: "warning",
          destinations: ["ops"],
        },
        { events: ["payment.indeterminate", "reconcile.mismatch"] },
      ],
      queue_size: 50,
      dedup_window_seconds: 60,
      retry: { max_attempts: 3, base_delay_seconds: 0.5 },
    });
    expect(c.destinations).toEqual([
      { name: "ops", url: "https://hooks.example.com/x", secret: SECRET, timeoutMs: 5000 },
      { name: "audit", url: "http://127.0.0.1:9000/hook", secret: SECRET, timeoutMs: 2500 },
    ]);
    expect(c.rules).toEqual([
      { events: ["budget.threshold"], minSeverity: "warning", thresholds: [50, 100], destinations: ["ops"] },
      { events: ["payment.indeterminate", "reconcile.mismatch"], minSeverity: "info" },
    ]);
    expect(c).toMatchObject({
      queueSize: 50,
      dedupWindowMs: 60_000,
      retry: { maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 60_000, maxElapsedMs: 600_000 },
    });
  });

  it("an empty section means no notifications", () => {
    expect(resolve({})).toMatchObject({
      destinations: [],
      rules: [],
      queueSize: 1000,
      dedupWindowMs: 300_000,
    });
  });

  it("has no field for an inline secret, and does not echo one", () => {
    const r = notificationsFileSchema.safeParse({
      destinations: [dest({ secret: "inline-secret-value-123" })],
    });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).not.toContain("inline-secret-value-123");
  });

  it.each<[string, unknown, RegExp]>([
    [
      "a variable that is not set",
      { destinations: [dest({ secret_env: "NOT_SET" })] },
      /destinations\[0\]\.secret_env: the environment variable NOT_SET is not set/,
    ],
    [
      "both sources",
      { destinations: [dest({ secret_file: "/run/secrets/hook" })] },
      /exactly one of secret_env or secret_file/,
    ],
    [
      "no source",
      { destinations: [{ name: "ops", url: "https://h.example/x" }] },
      /exactly one of secret_env or secret_file/,
    ],
    ["a short secret", { destinations: [dest({ secret_env: "SHORT" })] }, /shorter than 16 characters/],
    [
      "an unreadable file",
      { destinations: [dest({ secret_env: undefined, secret_file: "/nope/secret-path" })] },
      /secret_file: cannot read the file$/,
    ],
    [
      "credentials in the URL",
      { destinations: [dest({ url: "https://user:pw@hooks.example.com/x" })] },
      /carries a user name or password/,
    ],
    ["a name used twice", { destinations: [dest(), dest()] }, /"ops" is used twice/],
    [
      "a rule naming no destination",
      { destinations: [dest()], rules: [{ events: ["breaker.open"], destinations: ["pager"] }] },
      /rules\[0\]\.destinations: no destination is named "pager"/,
    ],
    [
      "thresholds on other events",
      { destinations: [dest()], rules: [{ events: ["breaker.open"], thresholds: [80] }] },
      /thresholds apply to budget.threshold only/,
    ],
    [
      "rules without destinations",
      { rules: [{ events: ["breaker.open"] }] },
      /rules are set but no destinations/,
    ],
    [
      "a max delay below the base",
      { retry: { base_delay_seconds: 10, max_delay_seconds: 1 } },
      /max_delay_seconds is below base_delay_seconds/,
    ],
  ])("refuses %s", (_name, raw, message) => {
    let err: unknown;
    try {
      resolve(raw);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StokaProxyError);
    const e = err as StokaProxyError;
    expect(e.code).toBe("config_invalid");
    expect(e.message).toMatch(/^proxy\.yaml: notifications\./);
    expect(e.message).toMatch(message);
    // never the secret, never the file path an OS error would quote
    expect(`${e.message} ${e.hint}`).not.toContain(SECRET);
    expect(e.message).not.toContain("/nope/secret-path");
  });

  it.each<[string, unknown]>([
    ["an unknown event", { rules: [{ events: ["payment.settled"] }] }],
    ["an unknown severity", { rules: [{ events: ["breaker.open"], min_severity: "loud" }] }],
    ["a non-http URL", { destinations: [dest({ url: "file:///etc/passwd" })] }],
    ["a name that cannot be a label", { destinations: [dest({ name: "ops team" })] }],
    ["a zero queue", { queue_size: 0 }],
    ["an unknown field", { destination: [] }],
  ])("the schema refuses %s", (_name, raw) => {
    expect(notificationsFileSchema.safeParse(raw).success).toBe(false);
  });
});
