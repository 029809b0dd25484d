import { fork } from "node:child_process";
import type { ChildProcess } from "node:child_process";

/**
 * A bench process of our own (upstream, load generator, bare peers, sandbox), forked with tsx
 * and spoken to over IPC: it sends `{type: "ready", ...}` once listening, then answers each
 * `{id, ...}` request with `{id, ...}`. Every wait has a deadline.
 */
export interface Worker<Ready> {
  child: ChildProcess;
  pid: number;
  ready: Ready;
  call<T>(msg: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

interface Reply {
  id?: number;
  type?: string;
  error?: string;
}

export async function startWorker<Ready>(
  file: string,
  args: string[],
  options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; wrap?: string[] } = {},
): Promise<Worker<Ready>> {
  // BENCH_WORKER_NODE_ARGS: extra Node flags for these processes (e.g. "--cpu-prof --cpu-prof-dir=…"
  // to profile a bare peer beside stoka-proxy's BENCH_STOKA_NODE_ARGS).
  const extra = (process.env.BENCH_WORKER_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);
  // `wrap`: a program Node runs under (valgrind and its flags); fork's IPC channel is an
  // inherited fd and an env var, which the wrapper passes on to the Node it starts.
  const [wrapper, ...wrapArgs] = options.wrap ?? [];
  const child = fork(file, args, {
    ...(wrapper ? { execPath: wrapper } : {}),
    execArgv: [...(wrapper ? [...wrapArgs, process.execPath] : []), "--import", "tsx", ...extra],
    stdio: ["ignore", "inherit", "pipe", "ipc"],
    env: options.env ?? process.env,
  });
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${file} did not start in time:\n${stderr}`)),
      options.timeoutMs ?? 60_000,
    );
    child.on("message", (m: Reply) => {
      if (m.type === "ready") {
        clearTimeout(timer);
        resolve(m as Ready);
        return;
      }
      const p = m.id === undefined ? undefined : pending.get(m.id);
      if (!p || m.id === undefined) return;
      pending.delete(m.id);
      if (m.error) p.reject(new Error(m.error));
      else p.resolve(m);
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      const e = new Error(`${file} exited (${code ?? signal}):\n${stderr}`);
      reject(e);
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    });
  });
  if (child.pid === undefined) throw new Error(`${file} has no pid`);
  return {
    child,
    pid: child.pid,
    ready,
    call<T>(msg: Record<string, unknown>, timeoutMs = 120_000): Promise<T> {
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${file}: no answer to ${String(msg.type)} within ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.send({ ...msg, id });
      });
    },
    stop: () => stopChild(child),
  };
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the child is gone. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
