import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import { StokaProxyError } from "../../src/errors.js";

/** `notifications:` in the config file: validated by the schema, secrets resolved at load. */
const file = (notifications: unknown) => configFileSchema.parse({ stoka_env: "test", notifications });

describe("notifications in the config", () => {
  it("resolves destinations, rules and the secret from the environment", () => {
    const c = resolveConfig(
      file({
        destinations: [{ name: "ops", url: "https://hooks.example.com/x", secret_env: "HOOK" }],
        rules: [{ events: ["budget.threshold"], thresholds: [50, 100] }],
      }),
      "c.yaml",
      { HOOK: "a-long-enough-secret-123" },
    );
    expect(c.notifications?.destinations).toEqual([
      {
        name: "ops",
        url: "https://hooks.example.com/x",
        secret: "a-long-enough-secret-123",
        timeoutMs: 5_000,
      },
    ]);
    expect(c.notifications?.rules[0]?.thresholds).toEqual([50, 100]);
  });

  it("absent: no notifier", () => {
    expect(
      resolveConfig(configFileSchema.parse({ stoka_env: "test" }), "c.yaml", {}).notifications,
    ).toBeUndefined();
  });

  it("a missing secret stops the start, naming the field and never a value", () => {
    let err: unknown;
    try {
      resolveConfig(
        file({ destinations: [{ name: "ops", url: "https://hooks.example.com/tok3n", secret_env: "HOOK" }] }),
        "c.yaml",
        {},
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StokaProxyError);
    expect((err as StokaProxyError).code).toBe("config_invalid");
    expect((err as Error).message).toMatch(/c\.yaml: notifications\.destinations\[0\]\.secret_env/);
    expect((err as Error).message).not.toContain("tok3n");
  });

  it("the schema refuses a secret in the config text", () => {
    expect(() =>
      file({ destinations: [{ name: "ops", url: "https://h.example/x", secret: "inline-secret-value" }] }),
    ).toThrow();
  });
});
