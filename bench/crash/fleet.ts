import type { Keypair } from "@stellar/stellar-sdk";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import type { PaymentStore } from "../../src/store/payment-store.js";
import { startProxyProcess, writeProxyConfig } from "../../test/support/proxy-process.js";
import type { ProxyProcess } from "../../test/support/proxy-process.js";
import { openTarget } from "../../test/support/payment-stores.js";
import type { LedgerRowView } from "./accounting.js";

/**
 * `stoka-proxy start` processes of one scenario: one wallet, one budget, one store layout
 * (a data directory each, one shared data directory, or a shared PostgreSQL database), and
 * the crashes done to them. Slot i is undefined while replica i is down.
 */
export interface FleetOptions {
  sandbox: Sandbox;
  wallet: Keypair;
  replicas: number;
  /** Config keys added to each replica's file (budgets, budget_store, payment_store, …); `i` is the replica. */
  extra: (i: number) => Record<string, unknown>;
  /** All replicas on one data directory (one SQLite file). */
  sharedDataDir?: boolean;
  /** Node arguments that run the CLI (see `CrashOptions.cli`). */
  cli: string[];
}

export class Fleet {
  readonly procs: (ProxyProcess | undefined)[] = [];
  readonly configs: { configPath: string; dataDir: string }[] = [];

  private constructor(private readonly options: FleetOptions) {}

  static async start(options: FleetOptions): Promise<Fleet> {
    const fleet = new Fleet(options);
    let shared: string | undefined;
    for (let i = 0; i < options.replicas; i++) {
      const c = writeProxyConfig(options.sandbox, options.extra(i), shared);
      if (options.sharedDataDir) shared = c.dataDir;
      fleet.configs.push(c);
    }
    try {
      // The first one alone (it creates the schema and the CA), then the rest together.
      await fleet.startOne(0);
      await Promise.all(fleet.configs.slice(1).map((_, i) => fleet.startOne(i + 1)));
    } catch (e) {
      await fleet.stopAll();
      throw e;
    }
    return fleet;
  }

  async startOne(i: number): Promise<ProxyProcess> {
    const c = this.configs[i];
    if (!c) throw new Error(`no replica ${i}`);
    const p = await startProxyProcess(this.options.sandbox, c.configPath, c.dataDir, {
      cli: this.options.cli,
      // A loaded machine (CI, other jobs) can take many seconds to start ten Node processes.
      startTimeoutMs: 120_000,
      env: { STELLAR_SECRET: this.options.wallet.secret() },
    });
    this.procs[i] = p;
    return p;
  }

  /** Stops replica i with `signal` (SIGTERM: a clean stop; SIGKILL: kill -9). */
  async stopOne(i: number, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const p = this.procs[i];
    this.procs[i] = undefined;
    await p?.stop(signal);
  }

  urls(): string[] {
    return this.procs.flatMap((p) => (p ? [p.url] : []));
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.procs.map((_, i) => this.stopOne(i)));
  }

  /** The SQLite files the replicas wrote (one per data directory). */
  sqliteFiles(): string[] {
    return [...new Set(this.configs.map((c) => `${c.dataDir}/stoka-proxy.db`))];
  }

  /** What the replicas logged, for a failure's explanation. */
  output(): string {
    return this.procs.map((p, i) => `--- replica ${i}\n${p?.output() ?? "(down)"}`).join("\n");
  }
}

/** Every ledger row of the stores, and whether each chain verifies. */
export async function readLedgers(
  stores: ({ kind: "sqlite"; path: string } | { kind: "postgres"; url: string })[],
): Promise<{ rows: LedgerRowView[]; chainProblems: string[] }> {
  const rows: LedgerRowView[] = [];
  const chainProblems: string[] = [];
  for (const target of stores) {
    const store: PaymentStore = await openTarget(
      target.kind === "postgres" ? { ...target, poolMax: 2 } : target,
    );
    try {
      const check = await store.verify();
      if (!check.ok) chainProblems.push(`ledger chain broken (${target.kind}): ${JSON.stringify(check)}`);
      for await (const r of store.rows())
        rows.push({ paymentId: r.paymentId, state: r.state, amount: r.amount, tx: r.tx });
    } finally {
      await store.close();
    }
  }
  return { rows, chainProblems };
}
