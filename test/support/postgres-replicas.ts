import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { ProxyAgent, request } from "undici";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { createTestDatabase } from "./postgres.js";
import type { TestDatabase } from "./postgres.js";
import { startProxyProcess, writeProxyConfig } from "./proxy-process.js";
import type { ProxyProcess } from "./proxy-process.js";

/**
 * Real `stoka-proxy start` replicas on one PostgreSQL database of their own (a team gateway),
 * in front of one sandbox: the emulator's charges are the truth every test compares with.
 * Each replica's config is what an operator writes: `payment_store: { kind: postgres, url }`.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
export const BASE = "http://test.api.stoka.space";
/** What the emulator charges for one POST /v1/store of BODY. */
export const PRICE = 1400n;
const BODY = Buffer.from("k".repeat(42));
const run = promisify(execFile);

export type Result = { status: number; error?: string; reason?: string };

export interface Gateway {
  sb: Sandbox;
  db: TestDatabase;
  procs: ProxyProcess[];
  configs: string[];
  /** What the emulator charged this wallet so far. */
  charged(): bigint;
  /** Starts replica `i` again on its config (after a stop or a kill). */
  restart(i: number): Promise<ProxyProcess>;
  close(): Promise<void>;
}

/**
 * `replicas` proxies sharing a day budget of `k` payments. `urlFor(i)` gives replica i's
 * database URL (a relay in front of PostgreSQL, say); by default the database's own.
 */
export async function startGateway(
  k: bigint,
  replicas: number,
  options: { urlFor?: (db: TestDatabase, i: number) => string; extra?: Record<string, unknown> } = {},
): Promise<Gateway> {
  const sb = await startSandbox();
  const db = await createTestDatabase();
  const g: Gateway = {
    sb,
    db,
    procs: [],
    configs: [],
    charged: () => sb.emulator.chargedTotal(sb.wallet.publicKey()),
    restart: async (i) => {
      const p = await startProxyProcess(sb, g.configs[i] as string, g.procs[i]?.dataDir as string);
      g.procs[i] = p;
      return p;
    },
    close: async () => {
      await Promise.all(g.procs.map((p) => p.stop()));
      await sb.close();
      await db.drop();
    },
  };
  const dataDirs: string[] = [];
  try {
    for (let i = 0; i < replicas; i++) {
      const { configPath, dataDir } = writeProxyConfig(sb, {
        payment_store: { kind: "postgres", url: options.urlFor?.(db, i) ?? db.url },
        budgets: [{ name: "shared", limits: { day: (k * PRICE).toString() } }],
        ...options.extra,
      });
      g.configs.push(configPath);
      dataDirs.push(dataDir);
    }
    // The first migrates; the others start together and find the schema made.
    g.procs.push(await startProxyProcess(sb, g.configs[0] as string, dataDirs[0] as string));
    g.procs.push(
      ...(await Promise.all(
        g.configs.slice(1).map((c, i) => startProxyProcess(sb, c, dataDirs[i + 1] as string)),
      )),
    );
    return g;
  } catch (e) {
    await g.close();
    throw e;
  }
}

/** `n` paid requests at once, spread over `urls`; a dropped connection is status 0. */
export async function hammer(urls: string[], n: number, prefix: string, connections = 64): Promise<Result[]> {
  const agents = urls.map((uri) => new ProxyAgent({ uri, connections }));
  try {
    return await Promise.all(
      Array.from({ length: n }, async (_, i): Promise<Result> => {
        try {
          const res = await request(`${BASE}/v1/store`, {
            method: "POST",
            headers: { "x-stoka-key": `${prefix}-${i}` },
            body: BODY,
            dispatcher: agents[i % agents.length],
          });
          const text = await res.body.text();
          const err = res.headers["x-stoka-proxy-error"];
          let reason: string | undefined;
          try {
            reason = (JSON.parse(text) as { proxy?: { reason?: string } }).proxy?.reason;
          } catch {
            // not JSON
          }
          return {
            status: res.statusCode,
            ...(typeof err === "string" ? { error: err } : {}),
            ...(reason ? { reason } : {}),
          };
        } catch {
          return { status: 0 };
        }
      }),
    );
  } finally {
    await Promise.all(agents.map((a) => a.close()));
  }
}

/** How many requests ended how: `201`, `402 budget_exceeded`, … (a readable failure). */
export function tally(rs: Result[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rs) {
    const key = r.error ? `${r.status} ${r.error}` : String(r.status);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

export const paidCount = (rs: Result[]) => rs.filter((r) => r.status === 201).length;

/** `stoka-proxy <args> --config <configPath>` as an operator runs it. */
export async function cli(
  sb: Sandbox,
  configPath: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(
      process.execPath,
      ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args, "--config", configPath],
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? "", STELLAR_SECRET: sb.wallet.secret() },
        timeout: 60_000,
      },
    );
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

export async function readyz(adminUrl: string): Promise<{ status: number; reasons: string[] }> {
  const res = await fetch(`${adminUrl}/readyz`);
  const body = (await res.json()) as { reasons?: string[] };
  return { status: res.status, reasons: body.reasons ?? [] };
}

/** Polls until `test` holds (bounded); returns whether it did. */
export async function eventually(test: () => Promise<boolean> | boolean, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await Promise.resolve(test()).catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export interface LedgerTotals {
  settled: bigint;
  indeterminate: bigint;
  /** reserved or sent: payments whose outcome nobody has written yet. */
  open: number;
  settledPayments: number;
  indeterminatePayments: number;
}

/** The database's ledger, each payment by its latest row. */
export async function ledgerTotals(db: TestDatabase): Promise<LedgerTotals> {
  const rows = await db.sql<{ state: string; amount: string }>(
    `SELECT l.state, l.amount::text AS amount FROM ledger l
      JOIN (SELECT payment_id, max(seq) AS m FROM ledger GROUP BY payment_id) x ON l.seq = x.m`,
  );
  const t: LedgerTotals = {
    settled: 0n,
    indeterminate: 0n,
    open: 0,
    settledPayments: 0,
    indeterminatePayments: 0,
  };
  for (const r of rows) {
    if (r.state === "settled") {
      t.settled += BigInt(r.amount);
      t.settledPayments++;
    } else if (r.state === "indeterminate") {
      t.indeterminate += BigInt(r.amount);
      t.indeterminatePayments++;
    } else if (r.state === "reserved" || r.state === "sent") t.open++;
  }
  return t;
}

/** `spend --json`'s use of the shared budget's day limit. */
export async function spendUsed(g: Gateway, configIndex = 0): Promise<bigint> {
  const spend = await cli(g.sb, g.configs[configIndex] as string, "spend", "--json");
  if (spend.code !== 0) throw new Error(`spend failed: ${spend.stderr}${spend.stdout}`);
  const out = JSON.parse(spend.stdout) as { budgets: { budget: string; used: string }[] };
  return BigInt(out.budgets.find((b) => b.budget === "shared")?.used ?? "-1");
}
