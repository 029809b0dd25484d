/**
 * The child side of bench/lib/worker.ts: announce readiness, answer requests by id, and exit
 * when the parent goes away (a bench must never leave servers running behind it).
 */
export type Handler = (msg: Record<string, unknown>) => Promise<Record<string, unknown>>;

export function serveIpc(ready: Record<string, unknown>, handle: Handler, onStop: () => Promise<void>): void {
  const send = (m: Record<string, unknown>) => process.send?.(m);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const hard = setTimeout(() => process.exit(0), 3_000);
    hard.unref();
    void onStop().finally(() => process.exit(0));
  };
  process.on("message", (msg: Record<string, unknown>) => {
    const id = msg.id;
    handle(msg).then(
      (reply) => send({ ...reply, id }),
      (e: unknown) => send({ id, error: (e as Error).stack ?? String(e) }),
    );
  });
  process.on("disconnect", stop);
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  send({ type: "ready", ...ready });
}
