import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { SqliteBudgetStore } from "../../src/budget/sqlite-store.js";
import { configFileSchema } from "../../src/config/schema.js";
import { ProxyMetrics } from "../../src/observability/metrics.js";
import { OperatorMetrics } from "../../src/observability/operator-metrics.js";
import { openDatabase } from "../../src/storage/sqlite.js";

/** The documentation in docs/ stays complete, and nothing in the repository points outside it. */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const doc = (name: string) => readFileSync(join(ROOT, "docs", name), "utf8");

/** Every leaf field of the schema, as `a.b[].c`. */
function leafFields(schema: z.ZodType, prefix = ""): string[] {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault)
    return leafFields(schema.unwrap() as z.ZodType, prefix);
  if (schema instanceof z.ZodArray) {
    const inner = leafFields(schema.element as z.ZodType, `${prefix}[]`);
    return inner.length === 1 && inner[0] === `${prefix}[]` ? [prefix] : inner;
  }
  if (schema instanceof z.ZodObject)
    return Object.entries(schema.shape).flatMap(([k, v]) =>
      leafFields(v as z.ZodType, prefix ? `${prefix}.${k}` : k),
    );
  return [prefix];
}

describe("docs/configuration.md", () => {
  const fields = leafFields(configFileSchema);

  it("reads the schema's fields", () => {
    expect(fields).toContain("listen");
    expect(fields).toContain("budgets[].limits.rolling[].window_seconds");
    expect(fields).toContain("paid_hosts[].pay_to");
    expect(fields.length).toBeGreaterThan(60);
  });

  it("documents every field of the config file", () => {
    const text = doc("configuration.md");
    expect(fields.filter((f) => !text.includes(`\`${f}\``))).toEqual([]);
  });
});

describe("docs/metrics.md", () => {
  it("documents every metric the proxy registers", async () => {
    const db = openDatabase(":memory:");
    try {
      const registry = new Registry();
      new ProxyMetrics(registry, [], new SqliteBudgetStore(db), () => 0, "C", "stellar:testnet");
      new OperatorMetrics(registry, []);
      const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
      expect(names.length).toBeGreaterThan(10);
      const text = doc("metrics.md");
      expect(names.filter((n) => !text.includes(`\`${n}\``))).toEqual([]);
    } finally {
      db.close();
    }
  });
});

describe("the repository is self-contained", () => {
  // Spelled in pieces so that this file does not match itself.
  const outside = [
    ["..", "/shared"],
    ["/work", "/shared"],
    ["design", ".md"],
    ["stoka-protocol", ".md"],
    ["testing", ".md"],
    ["stellar-x402", "-notes"],
  ].map((parts) => parts.join(""));

  it("no tracked file refers to notes outside it", () => {
    const files = execFileSync("git", ["ls-files"], { cwd: ROOT, encoding: "utf8" })
      .split("\n")
      .filter((f) => f !== "" && f !== "package-lock.json");
    const found: string[] = [];
    for (const file of files) {
      let text: string;
      try {
        text = readFileSync(join(ROOT, file), "utf8");
      } catch {
        continue; // removed in the working tree
      }
      for (const needle of outside) if (text.includes(needle)) found.push(`${file}: ${needle}`);
    }
    expect(found).toEqual([]);
  });

  it("the five documents are there", () => {
    for (const name of [
      "architecture.md",
      "wire-protocol.md",
      "configuration.md",
      "metrics.md",
      "operations.md",
    ])
      expect(doc(name).length).toBeGreaterThan(1000);
  });
});
