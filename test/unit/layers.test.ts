import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * Arrows one way: every import in src/ (static `import` / `export … from`, `import type`,
 * side-effect and dynamic imports alike) goes from a folder to a folder strictly lower in this
 * table, or stays inside its own folder. An import back up the table, or sideways to another
 * folder of the same row, fails naming the file and the import. docs/architecture.md
 * ("The layers") shows this table; a test below keeps the two alike.
 */
export const LAYERS: readonly { units: readonly string[]; role: string }[] = [
  { units: ["cli"], role: "the command line: start, sandbox, ledger, budgets, reconcile, ca" },
  { units: ["sandbox"], role: "the stoka emulator, the fake Soroban RPC, the sandbox wiring" },
  {
    units: ["proxy"],
    role: "the listeners and the traffic paths (forward, CONNECT, gateway), the payment I/O",
  },
  {
    units: ["payment", "tls"],
    role: "the payment decision, outcome, book, payees, reconciler; TLS interception",
  },
  {
    units: ["observability"],
    role: "the request record, logs, metrics, the admin listener and status page, operator events",
  },
  { units: ["stoka"], role: "the client for stoka's own API, route names" },
  {
    units: ["store"],
    role: "the payment store: ledger and budgets in one transaction (SQLite, PostgreSQL)",
  },
  { units: ["budget"], role: "the budget engine: matching, periods, SQLite and Redis stores, restore" },
  { units: ["ledger", "wallet"], role: "the hash-chained ledger; the signers" },
  { units: ["config", "x402"], role: "the configuration and the data types it owns; the x402 wire format" },
  {
    units: ["resilience", "operator"],
    role: "pure resilience decisions (retries, rate limits, breakers, idempotency); the status page, webhooks, security events",
  },
  {
    units: ["http", "stellar", "storage", "parsing", "secrets"],
    role: "the HTTP client and URL pieces; Stellar; SQLite; bounded JSON and globs; redaction",
  },
  { units: ["process"], role: "running a command with a timeout" },
  { units: ["errors"], role: "the error codes and their HTTP status (src/errors.ts)" },
];

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SRC = join(ROOT, "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|mts|cts)$/.test(name) ? [path] : [];
  });
}

/** A file's unit: its folder under src/, or its own name for a file at the top of src/. */
function unitOf(file: string, src = SRC): string {
  const [first = "", ...rest] = relative(src, file).split(sep);
  return rest.length === 0 ? first.replace(/\.[cm]?[jt]s$/, "") : first;
}

export interface Violation {
  file: string;
  specifier: string;
  from: string;
  to: string;
  why: string;
}

/** Every import of `files` that the table does not allow. */
export function violations(files: readonly string[], src = SRC, layers = LAYERS): Violation[] {
  const rank = new Map<string, number>();
  layers.forEach((row, i) => row.units.forEach((u) => rank.set(u, i)));
  const out: Violation[] = [];
  for (const file of files) {
    const from = unitOf(file, src);
    const text = readFileSync(file, "utf8");
    for (const { fileName: specifier } of ts.preProcessFile(text, true, true).importedFiles) {
      if (!specifier.startsWith(".")) continue; // packages and node: builtins
      const target = resolve(dirname(file), specifier);
      if (!target.startsWith(src + sep)) continue;
      const to = unitOf(target, src);
      if (to === from) continue;
      const f = rank.get(from);
      const t = rank.get(to);
      const name = relative(dirname(src), file);
      if (f === undefined || t === undefined) {
        out.push({
          file: name,
          specifier,
          from,
          to,
          why: `${f === undefined ? from : to} is not in the table`,
        });
      } else if (t < f) {
        out.push({
          file: name,
          specifier,
          from,
          to,
          why: `runs back up the layers (${from} is below ${to})`,
        });
      } else if (t === f) {
        out.push({
          file: name,
          specifier,
          from,
          to,
          why: `runs sideways within one layer (${from} and ${to})`,
        });
      }
    }
  }
  return out;
}

const describeViolation = (v: Violation) => `${v.file}: import "${v.specifier}" ${v.why}`;

describe("layers", () => {
  const files = sourceFiles(SRC);

  it("every folder of src/ is in the table, once", () => {
    const units = new Set(files.map((f) => unitOf(f)));
    const listed = LAYERS.flatMap((row) => row.units);
    expect(new Set(listed).size).toBe(listed.length);
    expect([...units].filter((u) => !listed.includes(u))).toEqual([]);
    expect(listed.filter((u) => !units.has(u))).toEqual([]);
  });

  it("no import runs back up the table or sideways across a layer", () => {
    expect(violations(files).map(describeViolation)).toEqual([]);
  });

  it("catches imports of every kind that run up or sideways, and names the file and the import", () => {
    const root = mkdtempSync(join(tmpdir(), "layers-"));
    try {
      const src = join(root, "src");
      const write = (path: string, text: string) => {
        mkdirSync(dirname(join(src, path)), { recursive: true });
        writeFileSync(join(src, path), text);
      };
      write(
        "budget/probe.ts",
        [
          'import type { ProxyContext } from "../proxy/context.js";',
          "export {",
          "  StokaClient,",
          '} from "../stoka/client.js";',
          'import "../ledger/entry.js";',
          'const later = () => import("../observability/logger.js");',
          'import { globMatches } from "../parsing/glob.js";',
          'import { bucketStart } from "./budget.js";',
          'import { z } from "zod";',
          '// import { nothing } from "../cli/main.js";',
        ].join("\n"),
      );
      write(
        "ledger/entry.ts",
        'import type { Budget } from "../config/config.js";\nimport "../wallet/setup.js";',
      );
      expect(violations(sourceFiles(src), src).map(describeViolation)).toEqual([
        'src/budget/probe.ts: import "../proxy/context.js" runs back up the layers (budget is below proxy)',
        'src/budget/probe.ts: import "../stoka/client.js" runs back up the layers (budget is below stoka)',
        'src/budget/probe.ts: import "../observability/logger.js" runs back up the layers (budget is below observability)',
        'src/ledger/entry.ts: import "../wallet/setup.js" runs sideways within one layer (ledger and wallet)',
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("docs/architecture.md shows this table", () => {
    const doc = readFileSync(join(ROOT, "docs", "architecture.md"), "utf8");
    const start = doc.indexOf("## The layers");
    expect(start).toBeGreaterThanOrEqual(0);
    const end = doc.indexOf("\n## ", start + 1);
    const section = doc.slice(start, end < 0 ? undefined : end);
    const rows = [...section.matchAll(/^\| (\d+) +\| ([^|]+?) +\| ([^|]+?) +\|/gm)].map((m) => [
      Number(m[1]),
      (m[2] ?? "").split(",").map((u) => u.trim().replace(/`/g, "")),
      (m[3] ?? "").replace(/`/g, ""),
    ]);
    expect(rows).toEqual(LAYERS.map((row, i) => [i + 1, [...row.units], row.role]));
  });
});
