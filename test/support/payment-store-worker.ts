import { createInterface } from "node:readline";
import { BudgetStoreUnavailable } from "../../src/budget/store.js";
import type { LaterState, PaymentStore } from "../../src/store/payment-store.js";
import { budgetsFromJson, openTarget } from "./payment-stores.js";
import type { StoreTarget } from "./payment-stores.js";

/**
 * A separate process using a payment store, with its own connections (a replica, for the
 * tests and the benchmark). Config in STOKA_STORE_WORKER (JSON). It says `ready`, waits for a
 * `go` line on stdin, runs, says `done` with its counts, and exits.
 *   reserve: `count` reservations at once (at most `concurrency` in flight).
 *   churn:   `count` payments through open → sent → settled | rejected | failed | indeterminate.
 * Output: one JSON object a line.
 */
export interface WorkerConfig {
  target: StoreTarget;
  mode: "reserve" | "churn";
  count: number;
  concurrency: number;
  budgets: string;
  nowMs: number;
  leaseMs: number;
  price: string;
  idPrefix: string;
  /** Churn mode: the first `holdOpen` payments stop at reserved (even) or sent (odd), as a crash would leave them. */
  holdOpen?: number;
}

export interface WorkerCounts {
  ok: number;
  denied: number;
  unavailable: number;
  errors: string[];
  elapsedMs: number;
}

const say = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

const FINALS: readonly LaterState[] = ["settled", "rejected", "failed", "indeterminate"];

async function main(): Promise<void> {
  const config = JSON.parse(process.env.STOKA_STORE_WORKER ?? "{}") as WorkerConfig;
  const budgets = budgetsFromJson(config.budgets);
  const price = BigInt(config.price);
  const store: PaymentStore = await openTarget(config.target);
  say({ event: "ready", pid: process.pid });
  await new Promise<void>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on("line", (l) => {
      if (l.trim() === "go") {
        rl.close();
        // An open stdin would keep this process alive after it is done.
        process.stdin.destroy();
        resolve();
      }
    });
  });
  const counts: WorkerCounts = { ok: 0, denied: 0, unavailable: 0, errors: [], elapsedMs: 0 };
  const started = performance.now();
  let next = 0;
  let finished = 0;
  const one = async (i: number) => {
    const paymentId = `${config.idPrefix}-${i}`;
    const at = config.nowMs + i;
    try {
      const r = await store.open({
        payment: {
          paymentId,
          requestId: `req-${paymentId}`,
          client: "worker",
          route: "store",
          method: "POST",
          url: "http://test.api.stoka.space/v1/store",
          amount: price,
          payTo: "GPAYEE",
          asset: "USDC",
          network: "stellar:testnet",
        },
        budgets,
        nowMs: at,
        leaseUntilMs: at + config.leaseMs,
      });
      if (!r.ok) {
        counts.denied += 1;
        return;
      }
      counts.ok += 1;
      const held = i < (config.holdOpen ?? 0);
      if (held && i % 2 === 0) return;
      if (config.mode === "churn") {
        // The proxy signs and talks to the upstream between these steps: other work runs meanwhile.
        await turn();
        await store.record({
          paymentId,
          state: "sent",
          atMs: at + 1,
          tx: `tx-${i}`,
          upstreamStatus: null,
          reason: null,
        });
        await turn();
        if (held) return;
        const state = FINALS[i % FINALS.length] as LaterState;
        await store.record({ paymentId, state, atMs: at + 2, tx: null, upstreamStatus: 200, reason: null });
      }
    } catch (e) {
      if (e instanceof BudgetStoreUnavailable) counts.unavailable += 1;
      else counts.errors.push((e as Error).message);
    } finally {
      finished += 1;
      if (config.mode === "churn" && finished % 10 === 0) say({ event: "progress", done: finished });
    }
  };
  // Held payments are committed before the rest start: a kill after any progress finds them open.
  const holds = Math.min(config.holdOpen ?? 0, config.count);
  await Promise.all(Array.from({ length: holds }, () => one(next++)));
  await Promise.all(
    Array.from({ length: Math.min(config.concurrency, config.count) }, async () => {
      while (next < config.count) await one(next++);
    }),
  );
  counts.elapsedMs = performance.now() - started;
  await store.close();
  say({ event: "done", ...counts });
}

main().catch((e: unknown) => {
  say({ event: "crashed", error: (e as Error).message });
  process.exitCode = 1;
});
