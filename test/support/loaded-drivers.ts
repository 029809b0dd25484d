import { createRequire } from "node:module";
import { PassThrough } from "node:stream";
import { createLogger } from "../../src/observability/logger.js";
import { startSandboxWithProxy } from "../../src/sandbox/with-proxy.js";

/**
 * Run in a child process (test/e2e/lazy-drivers.test.ts): starts the sandbox and its proxy on
 * the default store, as `npm start` does, and prints which database
 * client libraries the process loaded (CommonJS modules, so the require cache lists them).
 */
const world = await startSandboxWithProxy(createLogger("warn", new PassThrough()), {
  listen: "127.0.0.1:0",
  adminListen: "127.0.0.1:0",
});
const cache = Object.keys(createRequire(import.meta.url).cache);
const loaded = ["pg", "ioredis"].filter((name) => cache.some((p) => p.includes(`/node_modules/${name}/`)));
await world.close();
process.stdout.write(`${JSON.stringify({ loaded, store: world.config.paymentStore.kind })}\n`);
