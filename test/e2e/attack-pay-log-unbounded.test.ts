import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

/**
 * A hostile app makes the proxy log one line per request; stdout is a pipe whose reader is
 * stuck (a wedged log shipper). The batched stdout (pino.destination, no maxLength) keeps every
 * unwritten line in memory: the proxy's memory grew with the app's request count until it was
 * OOM-killed (losing the buffered lines, and the proxy). Now lines past a cap are dropped and
 * counted, and the first line written afterwards says how many.
 */
const ROOT = join(import.meta.dirname, "../..");

describe("attack: log flood against a stuck stdout", () => {
  it("memory for unwritten log lines stays bounded", async () => {
    const c = spawn(
      process.execPath,
      ["--expose-gc", "--import", "tsx", join(ROOT, "test/support/attack-pay-log-child.ts")],
      {
        cwd: ROOT,
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    c.stdout.pause(); // never read
    let err = "";
    const waiters: (() => void)[] = [];
    c.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
      for (const w of waiters.splice(0)) w();
    });
    const until = async (re: RegExp) => {
      while (!re.test(err)) await new Promise<void>((r) => waiters.push(r));
    };
    await until(/ready/);
    c.stdin.write("flood 600000\n");
    await until(/grew (-?\d+)/);
    const grew = Number(/grew (-?\d+)/.exec(err)?.[1]);
    // 600 000 lines are ~85 MB of JSON; a bounded buffer keeps LOG_MAX_BUFFERED_BYTES of them.
    expect(grew / 2 ** 20, "MB of heap the unwritten lines hold").toBeLessThan(12);
    // Once stdout is read again, the next line written says how many were dropped.
    let out = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    c.stdout.resume();
    c.stdin.write("mark\n");
    const deadline = Date.now() + 10_000;
    while (!out.includes("the marker line") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    c.kill("SIGKILL");
    const notice = out
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; dropped_lines?: number })
      .find((l) => l.dropped_lines !== undefined);
    expect(notice?.msg).toMatch(/log lines were dropped/);
    expect(notice?.dropped_lines).toBeGreaterThan(500_000);
    expect(out).toContain("the marker line");
  }, 60_000);
});
