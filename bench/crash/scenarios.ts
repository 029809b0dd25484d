import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { Asset } from "@stellar/stellar-sdk";
import type { Keypair } from "@stellar/stellar-sdk";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { createTestDatabase } from "../../test/support/postgres.js";
import { privateRedis } from "../../test/support/redis-server.js";
import { resetSwitches } from "../../test/support/sandbox-fixture.js";
import { tcpRelay } from "../../test/support/tcp-relay.js";
import { account } from "./accounting.js";
import type { Accounting } from "./accounting.js";
import { Fleet, readLedgers } from "./fleet.js";
import { PRICE, describeTally, startLoad } from "./load.js";
import type { LoadTally } from "./load.js";

/**
 * The crash test's scenarios (docs/operations.md, The crash test): each gives a fresh wallet a
 * day budget of exactly K paid stores, sends more demand than K through real `stoka-proxy
 * start` processes, does something bad to them in the middle, and then compares every ledger
 * row with what the emulator charged that wallet.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);

export interface CrashOptions {
  sandbox: Sandbox;
  /** The budget: exactly K payments. */
  k: number;
  /** Paid stores asked for per scenario (more than K). */
  requests: number;
  /** Replicas in the shared-store scenarios. */
  replicas: number;
  /** Node arguments that run stoka-proxy's CLI: the sources under tsx, or a build (`bundleCli()`). */
  cli: string[];
}

export interface ScenarioResult {
  id: string;
  title: string;
  requests: number;
  limit: bigint;
  accounting: Accounting;
  /** Broken invariants and unmet expectations; the run fails when any scenario has one. */
  problems: string[];
  notes: string[];
  ms: number;
}

export interface Scenario {
  id: string;
  title: string;
  run(o: CrashOptions): Promise<ScenarioResult>;
}

const budgetOf = (k: number) => [{ name: "crash", limits: { day: (BigInt(k) * PRICE).toString() } }];
const crashPoint = (o: CrashOptions) => Math.max(1, Math.ceil(o.k / 3));
const CONCURRENCY = 8;

/** The closing measurement every scenario shares. */
async function settle(
  id: string,
  title: string,
  o: CrashOptions,
  wallet: Keypair,
  fleet: Fleet,
  stores: Parameters<typeof readLedgers>[0],
  tallies: LoadTally[],
  started: number,
  expect: { exact?: boolean; pays?: boolean } = {},
): Promise<ScenarioResult> {
  await fleet.stopAll();
  const limit = BigInt(o.k) * PRICE;
  const { rows, chainProblems } = await readLedgers(stores);
  const charges = o.sandbox.emulator.state.charges.filter((c) => c.payer === wallet.publicKey());
  const a = account(rows, charges, limit);
  const problems = [...chainProblems];
  if (a.overLimit > 0n) problems.push(`charged ${a.overLimit} atomic units over the budget`);
  if (a.ledgerProblems.length > 0) problems.push(...a.ledgerProblems);
  if (expect.exact && a.charged !== limit)
    problems.push(`no crash here, so exactly K payments should be charged: ${a.charged} of ${limit}`);
  if ((expect.pays ?? true) && a.charges === 0)
    problems.push("nothing was paid: the scenario proved nothing");
  return {
    id,
    title,
    requests: tallies.reduce((s, t) => s + t.requests, 0),
    limit,
    accounting: a,
    problems,
    notes: tallies.map(describeTally),
    ms: Date.now() - started,
  };
}

/** One replica with its own data directory, crashed with `signal` mid-load and started again. */
function restartScenario(id: string, title: string, signal: NodeJS.Signals): Scenario {
  return {
    id,
    title,
    async run(o) {
      const started = Date.now();
      const wallet = o.sandbox.newWallet();
      const fleet = await Fleet.start({
        sandbox: o.sandbox,
        wallet,
        replicas: 1,
        cli: o.cli,
        extra: () => ({ budgets: budgetOf(o.k) }),
      });
      try {
        const load = startLoad({
          requests: o.requests,
          concurrency: CONCURRENCY,
          prefix: id,
          targets: () => fleet.urls(),
        });
        await load.paid(crashPoint(o));
        await fleet.stopOne(0, signal);
        await fleet.startOne(0); // same config, same data directory
        const tally = await load.done;
        return await settle(id, title, o, wallet, fleet, fleet.sqliteFiles().map(sqlite), [tally], started);
      } finally {
        await fleet.stopAll();
      }
    },
  };
}

const sqlite = (path: string) => ({ kind: "sqlite" as const, path });

const sharedSqlite: Scenario = {
  id: "sqlite-shared",
  title: "N processes on one SQLite file",
  async run(o) {
    const started = Date.now();
    const wallet = o.sandbox.newWallet();
    const fleet = await Fleet.start({
      sandbox: o.sandbox,
      wallet,
      replicas: o.replicas,
      cli: o.cli,
      sharedDataDir: true,
      extra: () => ({ budgets: budgetOf(o.k) }),
    });
    try {
      const tally = await startLoad({
        requests: o.requests,
        concurrency: CONCURRENCY * 2,
        prefix: "sqlite-shared",
        targets: () => fleet.urls(),
      }).done;
      return await settle(
        this.id,
        this.title,
        o,
        wallet,
        fleet,
        fleet.sqliteFiles().map(sqlite),
        [tally],
        started,
        {
          exact: true,
        },
      );
    } finally {
      await fleet.stopAll();
    }
  },
};

const redisShared: Scenario = {
  id: "redis-shared",
  title: "N replicas on one Redis",
  async run(o) {
    const started = Date.now();
    const wallet = o.sandbox.newWallet();
    const redis = await privateRedis();
    await redis.start();
    try {
      const fleet = await Fleet.start({
        sandbox: o.sandbox,
        wallet,
        replicas: o.replicas,
        cli: o.cli,
        extra: () => ({
          budget_store: { kind: "redis", redis_url: redis.url, redis_prefix: "crash" },
          budgets: budgetOf(o.k),
        }),
      });
      try {
        const tally = await startLoad({
          requests: o.requests,
          concurrency: CONCURRENCY * 2,
          prefix: "redis-shared",
          targets: () => fleet.urls(),
        }).done;
        return await settle(
          this.id,
          this.title,
          o,
          wallet,
          fleet,
          fleet.sqliteFiles().map(sqlite),
          [tally],
          started,
          {
            exact: true,
          },
        );
      } finally {
        await fleet.stopAll();
      }
    } finally {
      await redis.stop();
    }
  },
};

/** `stoka-proxy budgets restore --ledger …` as the operator runs it. */
async function restoreBudgets(o: CrashOptions, configPath: string, ledgers: string[]): Promise<string> {
  const entry = o.cli;
  const r = await run(
    process.execPath,
    [...entry, "budgets", "restore", ...ledgers.flatMap((f) => ["--ledger", f]), "--config", configPath],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? "" }, timeout: 30_000 },
  );
  return r.stdout.trim();
}

const redisEmpty: Scenario = {
  id: "redis-empty",
  title: "N replicas, Redis restarted empty mid-load",
  async run(o) {
    const started = Date.now();
    const wallet = o.sandbox.newWallet();
    const redis = await privateRedis(); // no persistence: every start is empty
    await redis.start();
    try {
      const fleet = await Fleet.start({
        sandbox: o.sandbox,
        wallet,
        replicas: o.replicas,
        cli: o.cli,
        extra: () => ({
          budget_store: { kind: "redis", redis_url: redis.url, redis_prefix: "crash" },
          budgets: budgetOf(o.k),
        }),
      });
      try {
        const load = startLoad({
          requests: o.requests,
          concurrency: CONCURRENCY,
          prefix: "redis-empty",
          targets: () => fleet.urls(),
        });
        await load.paid(crashPoint(o));
        await redis.stop();
        await redis.start();
        const during = await load.done;
        // Fail closed: after the loss nothing is paid, by any replica, until the restore.
        const charges = () => o.sandbox.emulator.chargedTotal(wallet.publicKey());
        const before = charges();
        const probe = await startLoad({
          requests: o.replicas * 2,
          concurrency: CONCURRENCY,
          prefix: "redis-empty-lost",
          targets: () => fleet.urls(),
        }).done;
        const problems: string[] = [];
        if (probe.paid > 0 || charges() !== before)
          problems.push(`${probe.paid} paid while Redis had lost its state, before any restore`);
        const restored = await restoreBudgets(o, fleet.configs[0]?.configPath as string, fleet.sqliteFiles());
        const after = await startLoad({
          requests: o.requests,
          concurrency: CONCURRENCY,
          prefix: "redis-empty-restored",
          targets: () => fleet.urls(),
        }).done;
        const result = await settle(
          this.id,
          this.title,
          o,
          wallet,
          fleet,
          fleet.sqliteFiles().map(sqlite),
          [during, probe, after],
          started,
        );
        if (after.paid === 0 && result.accounting.charged + PRICE <= result.limit)
          problems.push("after `budgets restore` nothing was paid, though the budget had room");
        result.problems.push(...problems);
        result.notes = [
          `mid-load: ${describeTally(during)}`,
          `lost, before restore: ${describeTally(probe)}`,
          `${restored.split("\n")[0] ?? "restored"}; after: ${describeTally(after)}`,
        ];
        return result;
      } finally {
        await fleet.stopAll();
      }
    } finally {
      await redis.stop();
    }
  },
};

/**
 * Replicas on one PostgreSQL database of their own; `event` runs mid-load. With `resumes`, a
 * second load follows the first: the replicas must pay again once the database is back.
 */
function postgresScenario(
  id: string,
  title: string,
  replicas: (o: CrashOptions) => number,
  event?: (fleet: Fleet, relay: { stop(): Promise<void>; start(): Promise<void> }) => Promise<void>,
  resumes = false,
): Scenario {
  return {
    id,
    title,
    async run(o) {
      const started = Date.now();
      const wallet = o.sandbox.newWallet();
      const db = await createTestDatabase();
      const relay = await tcpRelay(5432);
      try {
        const fleet = await Fleet.start({
          sandbox: o.sandbox,
          wallet,
          replicas: replicas(o),
          cli: o.cli,
          // Few connections each: the machine's PostgreSQL is shared.
          extra: () => ({
            payment_store: { kind: "postgres", url: db.urlVia(relay.port), pool_max: 3 },
            budgets: budgetOf(o.k),
          }),
        });
        try {
          const load = startLoad({
            requests: o.requests,
            concurrency: CONCURRENCY * (event ? 1 : 2),
            prefix: id,
            targets: () => fleet.urls(),
          });
          if (event) {
            await load.paid(crashPoint(o));
            await event(fleet, relay);
          }
          const tallies = [await load.done];
          if (resumes) {
            // Refusals are fast: the first load may have ended while the database was away.
            tallies.push(
              await startLoad({
                requests: Math.ceil(o.requests / 2),
                concurrency: CONCURRENCY,
                prefix: `${id}-after`,
                targets: () => fleet.urls(),
              }).done,
            );
          }
          const result = await settle(
            id,
            title,
            o,
            wallet,
            fleet,
            [{ kind: "postgres", url: db.url }],
            tallies,
            started,
            { exact: !event },
          );
          const after = tallies[1];
          if (after) {
            const a = result.accounting;
            if (after.paid === 0 && a.settled + a.indeterminate + PRICE <= result.limit)
              result.problems.push("nothing was paid once PostgreSQL was back, though the budget had room");
            result.notes = [
              `mid-load: ${describeTally(tallies[0] as LoadTally)}`,
              `after: ${describeTally(after)}`,
            ];
          }
          return result;
        } finally {
          await fleet.stopAll();
        }
      } finally {
        await relay.close();
        await db.drop();
      }
    },
  };
}

const otherAsset: Scenario = {
  id: "other-asset",
  title: "payee asks for a non-USDC asset",
  async run(o) {
    const started = Date.now();
    const wallet = o.sandbox.newWallet();
    // Every requirement names the network's native asset (XLM) contract instead of USDC.
    const xlm = Asset.native().contractId(o.sandbox.chain.info.passphrase);
    o.sandbox.emulator.switches.requirementExtras = { asset: xlm };
    try {
      const fleet = await Fleet.start({
        sandbox: o.sandbox,
        wallet,
        replicas: 1,
        cli: o.cli,
        extra: () => ({ budgets: budgetOf(o.k) }),
      });
      try {
        const tally = await startLoad({
          requests: o.requests,
          concurrency: CONCURRENCY,
          prefix: "other-asset",
          targets: () => fleet.urls(),
        }).done;
        const result = await settle(
          this.id,
          this.title,
          o,
          wallet,
          fleet,
          fleet.sqliteFiles().map(sqlite),
          [tally],
          started,
          { pays: false },
        );
        if (result.accounting.signed > 0)
          result.problems.push(`${result.accounting.signed} payments signed for another asset`);
        if ((tally.refused.terms_rejected ?? 0) !== tally.requests)
          result.problems.push(`expected every request refused terms_rejected: ${describeTally(tally)}`);
        return result;
      } finally {
        await fleet.stopAll();
      }
    } finally {
      resetSwitches(o.sandbox);
    }
  },
};

export const SCENARIOS: readonly Scenario[] = [
  restartScenario("restart", "restart mid-load (SIGTERM, start again)", "SIGTERM"),
  restartScenario("kill-9", "kill -9 mid-load, start again", "SIGKILL"),
  sharedSqlite,
  redisShared,
  redisEmpty,
  postgresScenario("postgres-shared", "N replicas on one PostgreSQL", (o) => o.replicas),
  postgresScenario(
    "postgres-cut",
    "PostgreSQL connection cut mid-load (1.5 s)",
    (o) => Math.min(3, o.replicas),
    async (_fleet, relay) => {
      await relay.stop(); // every connection reset, new ones refused
      await new Promise((r) => setTimeout(r, 1500));
      await relay.start();
    },
    true,
  ),
  otherAsset,
  postgresScenario(
    "postgres-kill-9",
    "kill -9 of one PostgreSQL replica mid-load",
    (o) => Math.min(3, o.replicas),
    async (fleet) => {
      await fleet.stopOne(0, "SIGKILL");
      await fleet.startOne(0); // it takes over the open payments of the replica that died
    },
  ),
];
