import { createLogger } from "../../src/observability/logger.js";

/**
 * A child process for test/e2e/log-batching.test.ts: the proxy's stdout logger, driven by
 * commands on stdin ("one": one line; "flush": one line, then logger.flush; "many N": N lines then exit at once; "throw N": N
 * lines then an uncaught exception). Says "ready" on stderr after each command.
 */
const logger = createLogger("info");
let buffered = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  buffered += chunk;
  for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
    const [cmd, n] = buffered.slice(0, i).trim().split(" ");
    buffered = buffered.slice(i + 1);
    const count = Number(n ?? 0);
    if (cmd === "one") {
      logger.info({ n: 0 }, "one line");
      process.stderr.write("ready\n");
    } else if (cmd === "flush") {
      logger.info({ n: 0 }, "flushed line");
      logger.flush(() => process.stderr.write("ready\n"));
    } else if (cmd === "many") {
      for (let k = 0; k < count; k++) logger.info({ n: k }, "many");
      process.exit(0);
    } else if (cmd === "throw") {
      for (let k = 0; k < count; k++) logger.info({ n: k }, "many");
      throw new Error("boom after logging");
    }
  }
});
process.stderr.write("ready\n");
