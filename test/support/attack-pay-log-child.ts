import { createLogger } from "../../src/observability/logger.js";

/**
 * A child process for test/e2e/attack-pay-log-*.test.ts: the proxy's stdout logger driven by
 * stdin commands. "burst N": N lines of 17 000 bytes (each its own write chunk); "mark": one
 * short line; "flush": logger.flush(cb), cb says "flushed" on stderr; "lines N": N short lines
 * then process.exit(0); "flood N": N request-like lines, then "grew <bytes>" (heap after GC with --expose-gc, else RSS); "exit": process.exit(0). Says "ready" on stderr after each command.
 */
const logger = createLogger("info");
const pad = "x".repeat(17_000);
let buffered = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  buffered += chunk;
  for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
    const [cmd, n] = buffered.slice(0, i).trim().split(" ");
    buffered = buffered.slice(i + 1);
    const count = Number(n ?? 0);
    if (cmd === "burst") {
      for (let k = 0; k < count; k++) logger.info({ k, pad }, "burst");
    } else if (cmd === "mark") {
      logger.info({ payment: "p-123", state: "sent" }, "the marker line");
    } else if (cmd === "flush") {
      logger.flush((err) => process.stderr.write(`flushed ${err ? err.message : "ok"}\n`));
    } else if (cmd === "lines") {
      for (let k = 0; k < count; k++) logger.info({ n: k }, "line");
      process.exit(0);
    } else if (cmd === "flood") {
      // A hostile app's request flood: one line per request, stdout not read.
      // Heap after a full GC when the test gives --expose-gc (what is still held), else RSS.
      const gc = (globalThis as { gc?: () => void }).gc;
      const used = () => {
        gc?.();
        return gc ? process.memoryUsage().heapUsed : process.memoryUsage().rss;
      };
      const before = used();
      for (let k = 0; k < count; k++) logger.info({ n: k, route: "pass-through" }, "request");
      process.stderr.write(`grew ${used() - before}\n`);
    } else if (cmd === "exit") {
      process.exit(0);
    }
    process.stderr.write("ready\n");
  }
});
process.stderr.write("ready\n");
