import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
const LOG_FLUSH_MS = 100; // src/observability/logger.ts LOG_FLUSH_MS (a literal: the test also runs against the pre-batching logger)

/**
 * docs/metrics.md, Logs: "Lines go to stdout in batches: up to 32 KiB or 100 ms, whichever comes
 * first"; logger.ts: logger.flush(cb) "everything buffered goes out now".
 *
 * The 100 ms timer calls SonicBoom's flush(), which does nothing while a write is in flight
 * (stdout is a slow pipe: a log shipper that lags, a full pipe). When that write completes,
 * SonicBoom writes what is left only if it is more than minLength (4096 bytes): the tail (the
 * last few request lines) stays in memory, with no timer armed, until some later line arrives
 * or the process exits. A kill -9 / OOM kill then loses lines logged long before the last 100 ms.
 * logger.flush(cb) has the same hole: its callback runs on that 'drain' with the tail unwritten.
 */
const ROOT = join(import.meta.dirname, "../..");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function child() {
  const c = spawn(process.execPath, ["--import", "tsx", join(ROOT, "test/support/attack-pay-log-child.ts")], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const waiters: (() => void)[] = [];
  c.stderr.setEncoding("utf8").on("data", (d: string) => {
    err += d;
    for (const w of waiters.splice(0)) w();
  });
  const count = (s: string) => err.split("\n").filter((l) => l.startsWith(s)).length;
  const waitFor = async (s: string, n: number) => {
    while (count(s) < n) await new Promise<void>((r) => waiters.push(r));
  };
  const exited = new Promise<number | null>((r) => c.on("exit", (code) => r(code)));
  // The reader (a log shipper) is slow: nothing is read from the pipe until read() is called.
  c.stdout.pause();
  const read = () => {
    c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    c.stdout.resume();
  };
  return { c, waitFor, exited, read, out: () => out, err: () => err };
}

describe("attack: batched stdout keeps the tail in memory after a slow write", () => {
  it("a line logged while stdout is backed up is written within the flush interval once stdout drains", async () => {
    const w = child();
    await w.waitFor("ready", 1);
    w.c.stdin.write("burst 40\n"); // 680 KB: more than the pipe holds, the write is in flight
    await w.waitFor("ready", 2);
    await sleep(20);
    w.c.stdin.write("mark\n"); // logged before the 100 ms timer fires (during the stuck write)
    await w.waitFor("ready", 3);
    await sleep(500); // the timer fired while the write was in flight
    w.read(); // the shipper catches up
    const deadline = Date.now() + LOG_FLUSH_MS + 3000;
    while (!w.out().includes("the marker line") && Date.now() < deadline) await sleep(20);
    const seenBeforeExit = w.out().includes("the marker line");
    const burstLines = w
      .out()
      .split("\n")
      .filter((l) => l.includes('"msg":"burst"')).length;
    w.c.stdin.write("exit\n");
    expect(await w.exited).toBe(0);
    // It was only in memory: the exit hook writes it.
    expect(w.out()).toContain("the marker line");
    expect(burstLines).toBe(40);
    expect(seenBeforeExit, "the marker line was still buffered 3 s after stdout drained").toBe(true);
  }, 30_000);

  it("logger.flush(cb) calls back only once everything buffered is written", async () => {
    const w = child();
    await w.waitFor("ready", 1);
    w.c.stdin.write("burst 40\n");
    await w.waitFor("ready", 2);
    w.c.stdin.write("mark\n");
    await w.waitFor("ready", 3);
    w.c.stdin.write("flush\n");
    await w.waitFor("ready", 4);
    await sleep(300);
    w.read();
    await w.waitFor("flushed", 1);
    // Once the callback ran, the line is on the pipe: give the reader ample time for it.
    const deadline = Date.now() + 3000;
    while (!w.out().includes("the marker line") && Date.now() < deadline) await sleep(20);
    const seen = w.out().includes("the marker line");
    w.c.stdin.write("exit\n");
    expect(await w.exited).toBe(0);
    expect(w.out()).toContain("the marker line");
    expect(seen, "logger.flush's callback ran with the marker line still buffered").toBe(true);
  }, 30_000);

  it("logger.flush(cb) on a pipe stdout calls back without an error once the line is written", async () => {
    const w = child();
    w.read();
    await w.waitFor("ready", 1);
    w.c.stdin.write("mark\n");
    await w.waitFor("ready", 2);
    w.c.stdin.write("flush\n");
    await w.waitFor("flushed", 1);
    const deadline = Date.now() + 2000;
    while (!w.out().includes("the marker line") && Date.now() < deadline) await sleep(20);
    w.c.stdin.write("exit\n");
    expect(await w.exited).toBe(0);
    expect(w.out()).toContain("the marker line");
    // SonicBoom fsyncs after the write; fsync(2) on a pipe is EINVAL, handed to the callback.
    expect(w.err()).toContain("flushed ok");
  }, 30_000);
});
