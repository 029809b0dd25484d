import pino from "pino";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { parse } from "csv-parse/sync";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { ledgerExport } from "../../src/cli/ledger-commands.js";
import { jsonLine, table } from "../../src/cli/output.js";
import { withDefaultCommand } from "../../src/cli/program.js";
import { loadConfig, defaultDataDir, resolveConfig } from "../../src/config/load.js";
import { CSV_COLUMNS, csvLine, toExportObject } from "../../src/ledger/entry.js";
import { SqliteBudgetStore } from "../../src/budget/sqlite-store.js";
import { createLogger } from "../../src/observability/logger.js";
import { ProxyMetrics } from "../../src/observability/metrics.js";
import { acceptedRequestId } from "../../src/observability/request-id.js";
import { VERSION } from "../../src/observability/version.js";
import { openStores } from "../../src/payment/stores.js";
import { openDatabase } from "../../src/storage/sqlite.js";

describe("what the commands print", () => {
  it("--json: snake_case keys at every depth, bigints as decimal strings", () => {
    expect(
      JSON.parse(
        jsonLine([{ ledgerSettled: 1400n, date: "2026-01-01", nested: { headHash: "x", atMs: 1 } }]),
      ),
    ).toEqual([{ ledger_settled: "1400", date: "2026-01-01", nested: { head_hash: "x", at_ms: 1 } }]);
  });

  it("tables align every column; amounts to the right", () => {
    expect(
      table(
        ["BUDGET", "USED"],
        [
          ["a", "0.5 USDC"],
          ["longer-name", "10 USDC"],
        ],
        [1],
      ),
    ).toBe("BUDGET           USED\na            0.5 USDC\nlonger-name   10 USDC\n");
  });

  it.each([
    [[], ["start"]],
    [
      ["--listen", "x"],
      ["start", "--listen", "x"],
    ],
    [["--help"], ["--help"]],
    [["--version"], ["--version"]],
    [["spend"], ["spend"]],
  ])("%j runs as %j", (argv, expected) => {
    expect(withDefaultCommand(argv)).toEqual(expected);
  });
});

describe("ledger export --format csv (csv-stringify), read back with csv-parse", () => {
  it("round-trips commas, quotes, CR, LF and empty fields, with the columns of the export", async () => {
    const config = loadConfig({ STOKA_PROXY_DATA_DIR: mkdtempSync(join(tmpdir(), "stoka-csv-")) });
    const stores = openStores(config, pino({ level: "silent" }));
    const tricky = ['a,b "quoted"', "line\nbreak", "carriage\rreturn", "", "plain"];
    try {
      tricky.forEach((reason, i) =>
        stores.ledger.append({
          paymentId: `p${i}`,
          requestId: `r${i}`,
          atMs: Date.UTC(2026, 0, 1, 0, 0, i),
          client: "app",
          route: "store",
          method: "POST",
          url: "https://test.api.stoka.space/v1/store",
          amount: 1400n,
          payTo: "G".padEnd(56, "A"),
          asset: "C".padEnd(56, "A"),
          network: "stellar:testnet",
          state: "settled",
          tx: i === 0 ? null : "ab".repeat(32),
          upstreamStatus: i === 0 ? null : 201,
          reason: reason === "plain" ? null : reason,
        }),
      );
      const expected = [...stores.ledger.rows(0)].map((r) =>
        Object.fromEntries(
          Object.entries(toExportObject(r)).map(([k, v]) => [k, v === null ? "" : String(v)]),
        ),
      );
      let csv = "";
      expect(await ledgerExport(config, "csv", undefined, (t) => (csv += t))).toBe(0);
      const records = parse(csv, { columns: true }) as Record<string, string>[];
      expect(Object.keys(records[0] ?? {})).toEqual(CSV_COLUMNS);
      expect(records).toEqual(expected);
      // Byte-for-byte what the hand-written RFC 4180 writer produced: a CR is quoted too.
      expect(csv).toContain(',"carriage\rreturn",');
      expect(csv).toContain(',"a,b ""quoted""",');
      const before = [
        csvLine(CSV_COLUMNS),
        ...[...stores.ledger.rows(0)].map((r) => {
          const o = toExportObject(r);
          return csvLine(CSV_COLUMNS.map((k) => o[k] ?? null));
        }),
      ];
      expect(csv).toBe(before.map((l) => `${l}\n`).join(""));
    } finally {
      await stores.close();
    }
  });
});

describe("log and metric hygiene", () => {
  it("logs carry the level's name and an ISO time", async () => {
    const sink = new PassThrough();
    const lines: string[] = [];
    sink.on("data", (c: Buffer) => lines.push(c.toString()));
    createLogger("info", sink).warn({ a: 1 }, "hello");
    await new Promise((r) => setImmediate(r));
    const line = JSON.parse(lines.join("")) as { level: string; time: string; msg: string };
    expect(line).toMatchObject({ level: "warn", msg: "hello" });
    expect(new Date(line.time).toISOString()).toBe(line.time);
  });

  it("stoka_proxy_build_info and the counters with known labels exist before any traffic", async () => {
    const db = openDatabase(":memory:");
    try {
      const registry = new Registry();
      const c = resolveConfig({}, "(test)", {});
      new ProxyMetrics(registry, [], new SqliteBudgetStore(db), () => 0, "C", "stellar:testnet", Date.now, [
        "usage",
        "delete",
      ]);
      const text = await registry.metrics();
      expect(text).toContain(`stoka_proxy_build_info{version="${VERSION}",node="${process.version}"} 1`);
      expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
      for (const kind of ["connect", "timeout", "dropped", "status_5xx"])
        expect(text).toContain(`stoka_proxy_upstream_errors_total{kind="${kind}"} 0`);
      for (const kind of ["blind", "mitm", "http"])
        expect(text).toContain(`stoka_proxy_tunnels_total{kind="${kind}"} 0`);
      expect(text).toContain('stoka_proxy_wallet_auth_total{route="usage",outcome="signed"} 0');
      expect(text).toContain('stoka_proxy_wallet_auth_total{route="delete",outcome="rejected"} 0');
      expect(text).toContain('stoka_proxy_paid_without_receipt_total{route="store"} 0');
      expect(c.walletAuth.some((r) => r.route === "usage")).toBe(true);
    } finally {
      db.close();
    }
  });

  it.each([
    ["a UUID", "0f8e5b1c-3c9a-4d2e-9b7a-1d2c3e4f5a6b", true],
    ["a W3C trace id", "4bf92f3577b34da6a3ce929d0e0e4736", true],
    ["an app's id", "app-trace:42.a_b", true],
    ["empty", "", false],
    ["129 characters", "a".repeat(129), false],
    ["spaces and quotes", 'x" "level":"fatal', false],
    ["a newline", "a\nb", false],
    ["a seed", `S${"A".repeat(55)}`, false],
    // `stoka-proxy pay` marks its own payments so: a proxy payment must never look like one.
    ["`stoka-proxy pay`'s mark", "pay-command:0f8e5b1c", false],
    ["the mark in capitals", "PAY-COMMAND:x", false],
  ])("X-Request-Id %s: kept=%s", (_name, value, kept) => {
    expect(acceptedRequestId(value)).toBe(kept ? value : undefined);
  });

  it("several X-Request-Id values are not one id", () => {
    expect(acceptedRequestId(["a", "b"])).toBeUndefined();
  });
});

describe("the default data folder", () => {
  it("is $XDG_STATE_HOME/stoka-proxy, else ~/.local/state/stoka-proxy, never ./data", () => {
    expect(defaultDataDir({ XDG_STATE_HOME: "/x/state", HOME: "/h" })).toBe("/x/state/stoka-proxy");
    expect(defaultDataDir({ XDG_STATE_HOME: "relative", HOME: "/h" })).toBe("/h/.local/state/stoka-proxy");
    expect(defaultDataDir({ HOME: "/h" })).toBe("/h/.local/state/stoka-proxy");
    expect(loadConfig({ HOME: "/h" }).dataDir).toBe("/h/.local/state/stoka-proxy");
    expect(loadConfig({ HOME: "/h", STOKA_PROXY_DATA_DIR: "/data" }).dataDir).toBe("/data");
    expect(loadConfig({ HOME: "/h", STOKA_PROXY_DATA_DIR: "/data" }, { dataDir: "/flag" }).dataDir).toBe(
      "/flag",
    );
  });
});
