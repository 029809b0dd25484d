import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";

/** A private redis-server on a free loopback port, to stop and start in outage tests. */
export interface RedisServer {
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * Without persistence (the default) every start is empty: what a Redis restart without
 * persistence, or a failover to an empty replica, looks like. `persist` keeps an append-only
 * file fsynced on every write in a temp folder, so a restart (even after SIGKILL) keeps the data.
 */
export async function privateRedis(options: { persist?: boolean } = {}): Promise<RedisServer> {
  const port = await freePort();
  const persistence = options.persist
    ? ["--appendonly", "yes", "--appendfsync", "always", "--dir", mkdtempSync(join(tmpdir(), "stoka-redis-"))]
    : ["--appendonly", "no"];
  let child: ChildProcess | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn(
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--save", "", ...persistence],
        {
          stdio: "ignore",
        },
      );
      const probe = new Redis({
        port,
        host: "127.0.0.1",
        lazyConnect: true,
        retryStrategy: () => 50,
        maxRetriesPerRequest: null,
      });
      probe.on("error", () => undefined);
      await probe.connect().catch(() => undefined);
      await probe.ping();
      probe.disconnect();
    },
    async stop() {
      const c = child;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGKILL");
      await exited;
    },
  };
}
