import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { WorkerConfig, WorkerCounts } from "./payment-store-worker.js";

/** Starts payment-store-worker.ts processes, lets them go together, collects what they say. */
const ROOT = new URL("../..", import.meta.url).pathname;

export interface StoreWorker {
  child: ChildProcess;
  /** Resolves with the counts, or rejects when the process dies without them. */
  done: Promise<WorkerCounts>;
  /** Resolves once the worker reported `n` finished payments (churn mode). */
  progressed(n: number): Promise<void>;
  output(): string;
}

export async function startWorkers(configs: WorkerConfig[], timeoutMs = 60_000): Promise<StoreWorker[]> {
  const workers = configs.map((config) => startWorker(config, timeoutMs));
  await Promise.all(workers.map((w) => w.ready));
  for (const w of workers) w.worker.child.stdin?.write("go\n");
  return workers.map((w) => w.worker);
}

function startWorker(config: WorkerConfig, timeoutMs: number): { worker: StoreWorker; ready: Promise<void> } {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(ROOT, "test/support/payment-store-worker.ts")],
    {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        STOKA_STORE_WORKER: JSON.stringify(config),
      },
    },
  );
  let text = "";
  let progress = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  let readyResolve!: () => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  const done = new Promise<WorkerCounts>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`worker timed out:\n${text}`));
    }, timeoutMs);
    let buffered = "";
    child.stdout?.on("data", (c: Buffer) => {
      text += c.toString();
      buffered += c.toString();
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let msg: { event?: string; done?: number } & Partial<WorkerCounts>;
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          continue;
        }
        if (msg.event === "ready") readyResolve();
        if (msg.event === "progress" && typeof msg.done === "number") {
          progress = msg.done;
          for (const w of waiters.filter((x) => x.n <= progress)) w.resolve();
        }
        if (msg.event === "done") {
          clearTimeout(timer);
          resolve(msg as WorkerCounts);
        }
      }
    });
    child.stderr?.on("data", (c: Buffer) => (text += c.toString()));
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      const e = new Error(`worker exited (${signal ?? code}) before it was done:\n${text}`);
      readyReject(e);
      reject(e);
    });
  });
  done.catch(() => undefined);
  ready.catch(() => undefined);
  return {
    ready,
    worker: {
      child,
      done,
      progressed: (n) =>
        progress >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve })),
      output: () => text,
    },
  };
}
