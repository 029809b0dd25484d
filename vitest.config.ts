import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

// Most test files spend their time waiting on child processes, sockets and timers, not on the
// CPU: one worker per core minus one (vitest's default, 1 on a 2-core CI machine) runs them
// one after another. One more worker than cores overlaps those waits.
const workers = Math.max(2, Math.min(4, availableParallelism() + 1));

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    maxWorkers: workers,
  },
});
