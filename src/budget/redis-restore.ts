import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { redisDriver } from "../storage/drivers.js";
import { EPOCH_FIELDS, parseEpochRecord } from "./epoch.js";
import type { EpochLedgerMark, EpochRecord } from "./epoch.js";
import { ROLLING_PLACEHOLDER, redisKeys } from "./redis-keys.js";
import type { RestorePlan } from "./restore-plan.js";
import { redisWhere } from "./redis-store.js";

/**
 * The operator's side of the epoch: rebuild the counters of one prefix (restore) or empty
 * them (reset) and write a fresh epoch saying how it was made. Order matters:
 * 1. a tombstone replaces the record first, so every replica refuses to pay from then on;
 * 2. the caller reads the ledgers (after a short pause for reservations whose ledger row was
 *    being written);
 * 3. every budget key of the prefix is removed and the plan plus the new record are written in
 *    one MULTI: replicas see either the tombstone or the complete new epoch.
 * A crash in between leaves the tombstone: still failing closed; run the command again.
 */
export async function connectRedis(url: string): Promise<Redis> {
  const RedisClient = redisDriver();
  const redis = new RedisClient(url, {
    connectTimeout: 5000,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => (times > 5 ? null : 200),
    lazyConnect: true,
  });
  redis.on("error", () => undefined);
  try {
    await redis.connect();
  } catch (e) {
    redis.disconnect();
    throw new Error(`cannot reach Redis at ${redisWhere(url)}: ${(e as Error).message}`, { cause: e });
  }
  return redis;
}

export async function readEpoch(redis: Redis, prefix: string): Promise<EpochRecord | null> {
  const ek = redisKeys(prefix).epoch;
  const [exists, fields] = await Promise.all([redis.exists(ek), redis.hmget(ek, ...EPOCH_FIELDS)]);
  return parseEpochRecord(exists === 1, fields);
}

/** Step 1: from now on every replica refuses to pay (the reason says why). */
export async function beginMaintenance(redis: Redis, prefix: string, reason: string): Promise<void> {
  const ek = redisKeys(prefix).epoch;
  await redis.multi().del(ek).hset(ek, "origin", "lost", "at", Date.now(), "lost", reason).exec();
}

async function budgetKeys(redis: Redis, prefix: string): Promise<string[]> {
  const found = new Set<string>();
  for (const pattern of redisKeys(prefix).families) {
    let cursor = "0";
    // SCAN visits every key once the cursor is back at 0; bounded by the keyspace.
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      for (const k of keys) found.add(k);
      cursor = next;
    } while (cursor !== "0");
  }
  return [...found];
}

export interface WrittenEpoch {
  id: string;
  origin: "restore" | "reset";
  removedKeys: number;
}

/** Step 3: clear the prefix, write the plan and the new epoch record. */
export async function writeEpoch(
  redis: Redis,
  prefix: string,
  plan: RestorePlan,
  origin: "restore" | "reset",
  ledgers: EpochLedgerMark[],
): Promise<WrittenEpoch> {
  const keys = redisKeys(prefix);
  const old = await budgetKeys(redis, prefix);
  for (let i = 0; i < old.length; i += 500) await redis.unlink(...old.slice(i, i + 500));
  const id = randomUUID();
  const tx = redis.multi();
  for (const [key, c] of plan.counters) tx.set(key, c.value.toString()).pexpireat(key, c.expiresAtMs);
  for (const [key, members] of plan.rolling) {
    tx.zadd(key, 0, ROLLING_PLACEHOLDER, ...members.flatMap((m) => [m.score, m.member]));
  }
  for (const r of plan.reservations) {
    const res = keys.reservation(r.paymentId);
    tx.hset(res, {
      state: r.state,
      amount: r.amount.toString(),
      keys: JSON.stringify(r.keys),
      budgets: JSON.stringify(r.budgets),
    });
    if (r.state === "reserved") tx.zadd(keys.leases, r.leaseUntilMs, r.paymentId);
    else tx.pexpire(res, 400 * 86_400_000);
  }
  for (const [budget, amount] of plan.reserved) tx.set(keys.reserved(budget), amount.toString());
  tx.del(keys.epoch);
  const record: Record<string, string> = {
    id,
    origin,
    at: String(Date.now()),
    gen: "0",
    ledgers: JSON.stringify(ledgers),
  };
  for (const [key, expires] of plan.marks) record[`k:${key}`] = String(expires);
  tx.hset(keys.epoch, record);
  const results = await tx.exec();
  const failed = results?.find(([err]) => err);
  if (!results || failed)
    throw new Error(`writing the new epoch failed: ${failed?.[0]?.message ?? "aborted"}`);
  return { id, origin, removedKeys: old.length };
}
