import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LOG_MAX_BUFFERED_BYTES } from "../../src/observability/batched-stdout.js";

/**
 * A stuck stdout (a wedged log shipper) and an app that sends a request now and then (one
 * every 120 ms). LOG_MAX_BUFFERED_BYTES is meant to bound what unwritten lines hold. Since
 * 476b62c each LOG_FLUSH_MS batch is a fresh 32 KiB Buffer handed whole to SonicBoom
 * (subarray of it), while SonicBoom's maxLength counts only the bytes used: a batch holding one
 * 150-byte line keeps 32 KiB alive. 250 such lines (~40 KB of JSON) hold ~8 MiB, past the 4 MiB
 * cap; lines are only dropped once 4 MiB of *line bytes* wait, i.e. ~28 000 batches ≈ 900 MiB.
 */
const ROOT = join(import.meta.dirname, "../..");

describe("attack: slow request trickle against a stuck stdout", () => {
  it("memory held by unwritten log lines stays within LOG_MAX_BUFFERED_BYTES", async () => {
    const c = spawn(
      process.execPath,
      ["--expose-gc", "--import", "tsx", join(ROOT, "test/support/attack-perf-log-trickle-child.ts")],
      { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] },
    );
    try {
      c.stdout.pause(); // never read
      let err = "";
      const waiters: (() => void)[] = [];
      c.stderr.setEncoding("utf8").on("data", (d: string) => {
        err += d;
        for (const w of waiters.splice(0)) w();
      });
      const until = async (re: RegExp, ms: number) => {
        const deadline = Date.now() + ms;
        while (!re.test(err)) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}: ${err}`);
          await new Promise<void>((r) => {
            waiters.push(r);
            setTimeout(r, 200);
          });
        }
      };
      await until(/ready/, 15_000);
      err = "";
      // ~2 MB of lines: the pipe is full, the writer stuck; well under the 4 MiB cap.
      c.stdin.write("fill 120\n");
      await until(/ready/, 15_000);
      err = "";
      c.stdin.write("trickle 250\n");
      await until(/grew (-?\d+) lines (\d+)/, 60_000);
      const m = /grew (-?\d+) lines (\d+)/.exec(err) as RegExpExecArray;
      const grew = Number(m[1]);
      const lineBytes = Number(m[2]);
      expect(lineBytes).toBeLessThan(64 * 1024);
      expect(grew, `bytes held for ${lineBytes} bytes of waiting lines`).toBeLessThan(LOG_MAX_BUFFERED_BYTES);
    } finally {
      c.kill("SIGKILL");
    }
  }, 90_000);
});
