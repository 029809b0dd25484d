import { describe, expect, it } from "vitest";
import { statCpuTicks } from "../../bench/lib/proc.js";
import { median, percentileSorted, ratio } from "../../bench/lib/stats.js";
import type { Summary } from "../../bench/lib/measure.js";
import type { BenchResults } from "../../bench/lib/results.js";
import { evaluateTargets } from "../../bench/lib/targets.js";

/** The benchmark's arithmetic and its target verdicts (fabricated numbers, no timing). */
describe("bench statistics", () => {
  it.each([
    [[3, 1, 2], 2],
    [[4, 1, 3, 2], 2.5],
    [[5], 5],
    [[Number.NaN, 1, 3], 2],
  ])("median of %j is %d", (values, expected) => {
    expect(median(values)).toBe(expected);
  });

  it("median of nothing is NaN", () => {
    expect(median([])).toBeNaN();
  });

  it.each([
    [50, 5],
    [90, 9],
    [99, 10],
    [100, 10],
    [0, 1],
  ])("nearest-rank p%d of 1..10 is %d", (p, expected) => {
    expect(percentileSorted([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], p)).toBe(expected);
  });

  it("a ratio over zero or NaN is NaN", () => {
    expect(ratio(1, 0)).toBeNaN();
    expect(ratio(Number.NaN, 2)).toBeNaN();
    expect(ratio(3, 2)).toBe(1.5);
  });
});

describe("/proc/PID/stat CPU fields", () => {
  it("counts fields after the last parenthesis, whatever the command name holds", () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime …
    const line = "4242 (a b) c)) S 1 1 1 0 -1 4194560 10 0 0 0 150 25 300 45 20 0 1 0 100 0 0";
    expect(statCpuTicks(line)).toEqual({ self: 175, children: 345 });
  });
});

function summary(contender: string, conns: number, rps: number, extra: Partial<Summary> = {}): Summary {
  return {
    contender,
    conns,
    rounds: 3,
    rps,
    rpsRange: [rps, rps],
    p50Us: 1000,
    p90Us: 2000,
    p99Us: 3000,
    proxyUsPerReq: 100,
    proxyCores: 0.5,
    genCores: 0.3,
    upstreamCores: 0.1,
    otherCores: 0,
    upstreamConns: 0,
    upstreamConnsPer10s: 0,
    clientConns: conns,
    errors: 0,
    logBytesPerReq: 0,
    ...extra,
  };
}

function results(partial: Partial<BenchResults>): BenchResults {
  return {
    startedAt: "2026-01-01T00:00:00.000Z",
    finishedAt: "2026-01-01T00:10:00.000Z",
    machine: {
      cpuModel: "test",
      cores: 2,
      memoryGiB: 24,
      kernel: "Linux",
      node: "v20",
      loadAverageAtStart: [0, 0, 0],
      stokaProxy: { version: "0", commit: "x" },
      peers: {},
      stokaLogging: "",
    },
    options: {
      quick: false,
      roundSeconds: 3,
      rounds: 3,
      warmupSeconds: 2,
      conns: [64],
      scenarios: [],
      contenders: undefined,
      outDir: "/tmp",
      keepTemp: false,
    },
    throughput: [],
    failures: [],
    ...partial,
  };
}

const row = (rows: ReturnType<typeof evaluateTargets>, start: string) =>
  rows.find((r) => r.target.startsWith(start));

describe("bench targets", () => {
  it("judges every target n/a when nothing ran", () => {
    const rows = evaluateTargets(results({}));
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.every((r) => r.status === "n/a")).toBe(true);
  });

  it("judges MITM throughput, CPU and upstream connections per connection level", () => {
    const rows = evaluateTargets(
      results({
        throughput: [
          {
            id: "https-paid",
            title: "",
            generator: "",
            notes: [],
            levels: [
              {
                conns: 64,
                samples: [],
                summaries: [
                  summary("stoka-proxy", 64, 900, { proxyUsPerReq: 320, upstreamConns: 65 }),
                  summary("bare-node-mitm", 64, 1000),
                ],
              },
              {
                conns: 1,
                samples: [],
                summaries: [
                  summary("stoka-proxy", 1, 1000, { proxyUsPerReq: 300, upstreamConns: 1 }),
                  summary("bare-node-mitm", 1, 1000),
                ],
              },
            ],
          },
        ],
      }),
    );
    expect(row(rows, "HTTPS paid host, no 402 (MITM), 64 conn: ≥ 1× bare-node-mitm")?.status).toBe("FAIL");
    expect(row(rows, "HTTPS paid host, no 402 (MITM), 1 conn: ≥ 1× bare-node-mitm")?.status).toBe("PASS");
    expect(row(rows, "HTTPS paid host, no 402 (MITM), 64 conn: ≤ 300 µs")?.status).toBe("FAIL");
    expect(row(rows, "HTTPS paid host, no 402 (MITM), 1 conn: ≤ 300 µs")?.status).toBe("PASS");
    expect(row(rows, "HTTPS paid host, no 402 (MITM), 64 conn: upstream connections")?.status).toBe("FAIL");
    expect(row(rows, "HTTPS paid host, no 402 (MITM), 1 conn: upstream connections")?.status).toBe("PASS");
  });

  it("needs 1.5× tinyproxy for plain pass-through", () => {
    const pass = (stoka: number) =>
      evaluateTargets(
        results({
          throughput: [
            {
              id: "http-pass",
              title: "",
              generator: "",
              notes: [],
              levels: [
                {
                  conns: 16,
                  samples: [],
                  summaries: [summary("stoka-proxy", 16, stoka), summary("tinyproxy", 16, 1000)],
                },
              ],
            },
          ],
        }),
      );
    expect(row(pass(1499), "Plain HTTP pass-through, 16 conn: ≥ 1.5× tinyproxy")?.status).toBe("FAIL");
    expect(row(pass(1500), "Plain HTTP pass-through, 16 conn: ≥ 1.5× tinyproxy")?.status).toBe("PASS");
    // No bare-node in this run: that comparison is not judged.
    expect(row(pass(1500), "Plain HTTP pass-through, 16 conn: ≥ 1× bare-node")?.status).toBe("n/a");
  });

  it("compares paying through the proxy with the official in-process client", () => {
    const rows = evaluateTargets(
      results({
        official: {
          id: "official",
          title: "",
          price: "1234",
          cold: { runs: 5, clientMs: [], proxyMs: [], clientMedianMs: 200, proxyMedianMs: 180, ratio: 0.9 },
          warm: {
            requests: 90,
            clientP50Ms: 60,
            clientP90Ms: 70,
            proxyP50Ms: 48,
            proxyP90Ms: 60,
            ratio: 0.8,
          },
          quoteAhead: "none yet",
          paid: { client: 100, proxy: 100, settlements: 200 },
          notes: [],
        },
      }),
    );
    expect(row(rows, "Paid via proxy, cold")?.status).toBe("PASS");
    expect(row(rows, "Paid via proxy, warm")?.status).toBe("FAIL");
    expect(row(rows, "Paid via proxy with quote-ahead")?.status).toBe("n/a");
  });

  it("judges memory only at 1 000 idle connections, and growth by 5 %", () => {
    const mem = (idleConnections: number, afterSecond: number) =>
      evaluateTargets(
        results({
          memory: {
            id: "memory",
            title: "",
            idleConnections,
            requests: [50_000, 100_000],
            rssMB: { idle: 100, idleHttp: 140, idleMitm: 160, afterFirst: 100, afterSecond },
            growthMB: afterSecond - 100,
            errors: 0,
            notes: [],
          },
        }),
      );
    expect(row(mem(1000, 105), "RSS ≤ 150 MB at 1 000 idle HTTP")?.status).toBe("PASS");
    expect(row(mem(1000, 105), "RSS ≤ 150 MB at 1 000 idle MITM")?.status).toBe("FAIL");
    expect(row(mem(250, 105), "RSS ≤ 150 MB at 1 000 idle HTTP")?.status).toBe("n/a");
    expect(row(mem(1000, 105), "No RSS growth")?.status).toBe("PASS");
    expect(row(mem(1000, 106), "No RSS growth")?.status).toBe("FAIL");
    const quick = evaluateTargets(
      results({
        memory: {
          id: "memory",
          title: "",
          idleConnections: 100,
          requests: [2000, 4000],
          rssMB: { idle: 100, idleHttp: 110, idleMitm: 120, afterFirst: 100, afterSecond: 200 },
          growthMB: 100,
          errors: 0,
          notes: [],
        },
      }),
    );
    expect(row(quick, "No RSS growth")?.status).toBe("n/a");
  });
});

describe("callgrind dumps (the instructions scenario)", () => {
  it("reads the total of the dump written for `--dump=measured`, not the start-up's", async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { measuredTotal } = await import("../../bench/scenarios/instructions.js");
    const dir = mkdtempSync(join(tmpdir(), "callgrind-"));
    try {
      writeFileSync(join(dir, "callgrind.out"), "# callgrind format\ncmd: node\ntotals: 999999999\n");
      expect(measuredTotal(dir, "callgrind.out")).toBeUndefined();
      writeFileSync(
        join(dir, "callgrind.out.1"),
        "# callgrind format\ndesc: Trigger: dump measured\nevents: Ir\nsummary: 342031000\n",
      );
      expect(measuredTotal(dir, "callgrind.out")).toBe(342031000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
