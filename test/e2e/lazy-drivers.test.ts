import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * A proxy on the default SQLite store does not load the PostgreSQL or Redis client libraries
 * (src/storage/drivers.ts): each costs resident memory in every process for nothing.
 */
it("the sandbox proxy (SQLite store) loads neither pg nor ioredis", async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--import", "tsx", "test/support/loaded-drivers.ts"],
    { cwd: ROOT, timeout: 60_000 },
  );
  const report = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as {
    loaded: string[];
    store: string;
  };
  expect(report.store).toBe("sqlite");
  expect(report.loaded).toEqual([]);
}, 90_000);
