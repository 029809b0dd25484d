import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LOG_FLUSH_MS } from "../../src/observability/batched-stdout.js";

/**
 * The stdout logger batches lines (docs/metrics.md, Logs): a lone line still appears within
 * LOG_FLUSH_MS, and lines logged right before the process exits, or dies of an uncaught
 * exception, are all written.
 */
const ROOT = join(import.meta.dirname, "../..");

function writer() {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "test/support/log-writer.ts")], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const waiters: (() => void)[] = [];
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => {
    err += d;
    for (const w of waiters.splice(0)) w();
  });
  const readyCount = () => err.split("\n").filter((l) => l === "ready").length;
  const ready = async (n: number) => {
    while (readyCount() < n) await new Promise<void>((r) => waiters.push(r));
  };
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, ready, exited, out: () => out, lines: () => out.split("\n").filter(Boolean) };
}

describe("stdout log batching", () => {
  it("a lone line is written within the flush interval, without more traffic", async () => {
    const w = writer();
    await w.ready(1);
    w.child.stdin.write("one\n");
    await w.ready(2);
    const deadline = Date.now() + LOG_FLUSH_MS + 2000;
    while (!w.out().includes("one line") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    expect(w.out()).toContain('"msg":"one line"');
    w.child.stdin.write("many 0\n");
    expect(await w.exited).toBe(0);
  }, 30_000);

  it("logger.flush writes what is buffered before its callback", async () => {
    const w = writer();
    await w.ready(1);
    w.child.stdin.write("flush\n");
    await w.ready(2);
    // The callback ran once the write completed: the line is on its way to the pipe already.
    const deadline = Date.now() + 2000;
    while (!w.out().includes("flushed line") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    expect(w.out()).toContain('"msg":"flushed line"');
    w.child.stdin.write("many 0\n");
    expect(await w.exited).toBe(0);
  }, 30_000);

  it("every line logged right before process.exit is written", async () => {
    const w = writer();
    await w.ready(1);
    w.child.stdin.write("many 3000\n");
    expect(await w.exited).toBe(0);
    const ns = w.lines().map((l) => (JSON.parse(l) as { n: number }).n);
    expect(ns).toEqual(Array.from({ length: 3000 }, (_, i) => i));
  }, 30_000);

  it("every line logged right before an uncaught exception is written", async () => {
    const w = writer();
    await w.ready(1);
    w.child.stdin.write("throw 500\n");
    expect(await w.exited).toBe(1);
    expect(w.lines()).toHaveLength(500);
  }, 30_000);
});
