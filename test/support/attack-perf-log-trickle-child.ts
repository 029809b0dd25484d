import { createLogger } from "../../src/observability/logger.js";

/**
 * A child process for test/e2e/attack-perf-log-trickle.test.ts: the proxy's stdout logger
 * (BatchedStdout on fd 1, the test never reads it). "fill N": N lines of 17 000 bytes, so the
 * pipe is full and the writer is stuck; "trickle N": N request-like lines, one every 120 ms
 * (a slow app: each line waits alone for the LOG_FLUSH_MS timer), then
 * "grew <bytes> lines <bytes>": heap + array buffers held after a full GC, and the bytes of
 * the lines themselves. Run with --expose-gc. Says "ready" on stderr after each command.
 */
const logger = createLogger("info");
const gc = (globalThis as { gc?: () => void }).gc;
const held = () => {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
const pad = "x".repeat(17_000);
let buffered = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  buffered += chunk;
  for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
    const [cmd, n] = buffered.slice(0, i).trim().split(" ");
    buffered = buffered.slice(i + 1);
    const count = Math.min(Number(n ?? 0), 10_000);
    if (cmd === "fill") {
      for (let k = 0; k < count; k++) logger.info({ k, pad }, "fill");
      process.stderr.write("ready\n");
    } else if (cmd === "trickle") {
      const before = held();
      let k = 0;
      let bytes = 0;
      const tick = () => {
        if (k >= count) {
          process.stderr.write(`grew ${held() - before} lines ${bytes}\n`);
          process.stderr.write("ready\n");
          return;
        }
        const fields = { n: k, route: "other", host: "app.example", status: 200 };
        bytes += JSON.stringify(fields).length + 90;
        logger.info(fields, "request");
        k++;
        setTimeout(tick, 120);
      };
      tick();
    }
  }
});
process.stderr.write("ready\n");
