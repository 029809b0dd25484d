import { spawn } from "node:child_process";

/**
 * Runs an external signer command through `sh -c` in its own process group: `input` on stdin,
 * stdout returned (trimmed, at most 64 KiB). Killed with its whole group on timeout. The
 * proxy's own proxy variables and seed are not passed on: the command must not loop through
 * the proxy, and needs no key of ours. stderr is never echoed (a signer may print key material).
 */
export type CommandFailure =
  | { kind: "timeout"; timeoutMs: number }
  | { kind: "spawn"; message: string }
  | { kind: "exit"; code: number | null; hadOutput: boolean };

export class CommandError extends Error {
  constructor(readonly failure: CommandFailure) {
    super(
      failure.kind === "timeout"
        ? `did not answer within ${failure.timeoutMs} ms`
        : failure.kind === "spawn"
          ? `cannot be run: ${failure.message}`
          : `exited with ${String(failure.code)} and ${failure.hadOutput ? "some" : "no"} output`,
    );
  }
}

const HIDDEN_ENV = [
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "http_proxy",
  "https_proxy",
  "ALL_PROXY",
  "all_proxy",
  "STELLAR_SECRET",
];
const MAX_OUTPUT = 64 * 1024;

export function runCommand(command: string, input: string | Buffer, timeoutMs: number): Promise<string> {
  const env = { ...process.env };
  for (const k of HIDDEN_ENV) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], {
      stdio: ["pipe", "pipe", "ignore"],
      detached: true,
      env,
    });
    const out: Buffer[] = [];
    let outBytes = 0;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
    };
    const timer = setTimeout(() => {
      kill();
      finish(() => reject(new CommandError({ kind: "timeout", timeoutMs })));
    }, timeoutMs);
    child.stdout.on("data", (c: Buffer) => {
      outBytes += c.length;
      if (outBytes > MAX_OUTPUT) kill();
      else out.push(c);
    });
    child.on("error", (e) => finish(() => reject(new CommandError({ kind: "spawn", message: e.message }))));
    child.on("close", (code) => {
      const text = Buffer.concat(out).toString("utf8").trim();
      if (code !== 0 || text.length === 0) {
        finish(() => reject(new CommandError({ kind: "exit", code, hadOutput: text.length > 0 })));
      } else finish(() => resolve(text));
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(input);
  });
}
