import { Redis } from "ioredis";
import { bucketEnd, bucketStart, limitKey, periodLabel } from "./budget.js";
import type { Budget, BudgetLimit } from "./budget.js";
import { BudgetStoreUnavailable } from "./store.js";
import type { BudgetStore, ReservationRequest, ReserveResult } from "./store.js";

/**
 * Budgets shared through Redis by the replicas of a team gateway. One Lua script checks and
 * reserves across every matching budget and period atomically; release never takes a counter
 * below zero; reservations carry a lease. Fail closed: when Redis cannot be reached, every
 * call throws BudgetStoreUnavailable and the proxy refuses to pay.
 * Amounts are whole atomic units; Lua numbers are exact up to 2^53 (≈ 900 million USDC).
 */
const RESERVE = `
local prefix, id, amount, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local budgets = ARGV[7]
local resKey = prefix .. ':res:' .. id
if redis.call('EXISTS', resKey) == 1 then return {2} end
local function used(kind, key, arg)
  if kind == 'c' then return tonumber(redis.call('GET', key) or '0') end
  local total = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. arg, '+inf')) do
    total = total + tonumber(string.match(m, ':(%d+)$'))
  end
  return total
end
for i = 0, n - 1 do
  local kind, key, limit, arg = ARGV[8 + i*4], ARGV[9 + i*4], tonumber(ARGV[10 + i*4]), ARGV[11 + i*4]
  local u = used(kind, key, arg)
  if u + amount > limit then return {0, i, tostring(u)} end
end
local keys = {}
for i = 0, n - 1 do
  local kind, key, arg = ARGV[8 + i*4], ARGV[9 + i*4], ARGV[11 + i*4]
  if kind == 'c' then
    redis.call('INCRBY', key, amount)
    redis.call('PEXPIREAT', key, tonumber(arg))
  else
    redis.call('ZADD', key, now, id .. ':' .. amount)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 400 * 86400000)
  end
  table.insert(keys, {kind, key})
end
redis.call('HSET', resKey, 'state', 'reserved', 'amount', amount, 'keys', cjson.encode(keys), 'budgets', budgets)
redis.call('ZADD', prefix .. ':leases', lease, id)
for _, b in ipairs(cjson.decode(budgets)) do redis.call('INCRBY', prefix .. ':reserved:' .. b, amount) end
return {1}
`;

/** Moves a reservation out of `reserved`: spent / indeterminate keep the money, released gives it back. */
const FINISH = `
local prefix, id, to, from = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local resKey = prefix .. ':res:' .. id
if redis.call('HGET', resKey, 'state') ~= from then return 0 end
local amount = tonumber(redis.call('HGET', resKey, 'amount'))
if to == 'released' then
  for _, k in ipairs(cjson.decode(redis.call('HGET', resKey, 'keys'))) do
    if k[1] == 'c' then
      local v = tonumber(redis.call('GET', k[2]) or '0') - amount
      if v < 0 then v = 0 end
      redis.call('SET', k[2], v, 'KEEPTTL')
    else
      redis.call('ZREM', k[2], id .. ':' .. amount)
    end
  end
end
if from == 'reserved' then
  for _, b in ipairs(cjson.decode(redis.call('HGET', resKey, 'budgets'))) do
    local key = prefix .. ':reserved:' .. b
    local v = tonumber(redis.call('GET', key) or '0') - amount
    if v < 0 then v = 0 end
    redis.call('SET', key, v)
  end
end
redis.call('HSET', resKey, 'state', to)
redis.call('PEXPIRE', resKey, 400 * 86400000)
redis.call('ZREM', prefix .. ':leases', id)
return 1
`;

export interface RedisBudgetOptions {
  url: string;
  /** Every key starts with this; replicas sharing budgets share the prefix. */
  prefix: string;
  commandTimeoutMs?: number;
}

type ScriptRedis = Redis & {
  stokaReserve(...args: (string | number)[]): Promise<(number | string)[]>;
  stokaFinish(...args: (string | number)[]): Promise<number>;
};

export class RedisBudgetStore implements BudgetStore {
  readonly kind = "redis" as const;
  private readonly redis: ScriptRedis;
  private readonly prefix: string;

  constructor(options: RedisBudgetOptions) {
    this.prefix = options.prefix;
    const redis = new Redis(options.url, {
      enableOfflineQueue: false, // fail fast when disconnected (fail closed)
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 2000,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * times, 1000),
      lazyConnect: false,
    });
    redis.on("error", () => undefined); // reported through check() and failed calls
    redis.defineCommand("stokaReserve", { numberOfKeys: 0, lua: RESERVE });
    redis.defineCommand("stokaFinish", { numberOfKeys: 0, lua: FINISH });
    this.redis = redis as ScriptRedis;
  }

  /** Resolves once connected (or rejects after `timeoutMs`). */
  async ready(timeoutMs = 5000): Promise<void> {
    if (this.redis.status === "ready") return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new BudgetStoreUnavailable("Redis did not become ready")),
        timeoutMs,
      );
      this.redis.once("ready", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw new BudgetStoreUnavailable(`Redis: ${(e as Error).message}`);
    }
  }

  private counterKey(key: string, bucket: number): string {
    return `${this.prefix}:c:${key}:${bucket}`;
  }

  async reserve(r: ReservationRequest, record?: () => void): Promise<ReserveResult> {
    const groups: (string | number)[] = [];
    const meta: { budget: Budget; limit: BudgetLimit }[] = [];
    for (const b of r.budgets) {
      for (const limit of b.limits) {
        const key = limitKey(b.name, limit);
        if (limit.period.kind === "calendar") {
          const start = bucketStart(limit.period.unit, r.nowMs);
          // Keep finished buckets a while for `spend` and reconciliation, then let them expire.
          groups.push(
            "c",
            this.counterKey(key, start),
            limit.amount.toString(),
            bucketEnd(limit.period.unit, start) + 35 * 86_400_000,
          );
        } else {
          groups.push(
            "r",
            `${this.prefix}:r:${key}`,
            limit.amount.toString(),
            r.nowMs - limit.period.seconds * 1000,
          );
        }
        meta.push({ budget: b, limit });
      }
    }
    const names = JSON.stringify(r.budgets.map((b) => b.name));
    const out = await this.call(() =>
      this.redis.stokaReserve(
        this.prefix,
        r.paymentId,
        r.amount.toString(),
        r.nowMs,
        r.leaseUntilMs,
        meta.length,
        names,
        ...groups,
      ),
    );
    if (out[0] === 1) {
      try {
        record?.();
      } catch (e) {
        await this.release(r.paymentId).catch(() => undefined);
        throw e;
      }
      return { ok: true };
    }
    if (out[0] === 2) throw new Error(`payment id ${r.paymentId} was reserved before`);
    const hit = meta[Number(out[1])];
    if (!hit) throw new Error("Redis reserve script returned an unknown limit");
    return {
      ok: false,
      denial: {
        budget: hit.budget.name,
        period: periodLabel(hit.limit.period),
        limit: hit.limit.amount,
        spent: BigInt(String(out[2])),
        price: r.amount,
      },
    };
  }

  private async finish(
    paymentId: string,
    to: "spent" | "released" | "indeterminate",
    from = "reserved",
  ): Promise<void> {
    await this.call(() => this.redis.stokaFinish(this.prefix, paymentId, to, from));
  }

  resolveIndeterminate(paymentId: string, charged: boolean): Promise<void> {
    return this.finish(paymentId, charged ? "spent" : "released", "indeterminate");
  }

  commit(paymentId: string): Promise<void> {
    return this.finish(paymentId, "spent");
  }

  release(paymentId: string): Promise<void> {
    return this.finish(paymentId, "released");
  }

  markIndeterminate(paymentId: string): Promise<void> {
    return this.finish(paymentId, "indeterminate");
  }

  async expireLeases(nowMs: number): Promise<string[]> {
    const ids = await this.call(() => this.redis.zrangebyscore(`${this.prefix}:leases`, "-inf", nowMs));
    const expired: string[] = [];
    for (const id of ids) {
      if ((await this.call(() => this.redis.stokaFinish(this.prefix, id, "indeterminate", "reserved"))) === 1)
        expired.push(id);
    }
    return expired;
  }

  async used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint> {
    const key = limitKey(budget.name, limit);
    if (limit.period.kind === "calendar") {
      const v = await this.call(() =>
        this.redis.get(this.counterKey(key, bucketStart((limit.period as { unit: "day" }).unit, nowMs))),
      );
      return BigInt(v ?? "0");
    }
    const members = await this.call(() =>
      this.redis.zrangebyscore(
        `${this.prefix}:r:${key}`,
        `(${nowMs - (limit.period as { seconds: number }).seconds * 1000}`,
        "+inf",
      ),
    );
    return members.reduce((s, m) => s + BigInt(/:(\d+)$/.exec(m)?.[1] ?? "0"), 0n);
  }

  async reserved(budget: Budget): Promise<bigint> {
    return BigInt((await this.call(() => this.redis.get(`${this.prefix}:reserved:${budget.name}`))) ?? "0");
  }

  async check(): Promise<string | null> {
    try {
      await this.redis.ping();
      return null;
    } catch (e) {
      return `budget store (Redis) unreachable: ${(e as Error).message}`;
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}
