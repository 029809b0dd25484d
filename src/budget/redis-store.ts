import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { redisDriver } from "../storage/drivers.js";
import { bucketStart, limitKey, periodLabel } from "./budget.js";
import type { Budget, BudgetLimit } from "../config/config.js";
import { EPOCH_FIELDS, MISSING_RECORD, decideEpoch, lostMessage, parseEpochRecord } from "./epoch.js";
import type { EpochRecord, LedgerFacts } from "./epoch.js";
import { processMemory } from "./epoch-memory.js";
import type { EpochMemory } from "./epoch-memory.js";
import { limitSlots, redisKeys, rollingMemberAmount } from "./redis-keys.js";
import { BudgetStoreUnavailable } from "./store.js";
import type { BudgetStore, BudgetStoreWatcher, ReservationRequest, ReserveResult } from "./store.js";

/**
 * Budgets in Redis, common to the replicas of a team gateway. One Lua script checks and
 * reserves across every matching budget and period atomically; release never takes a counter
 * below zero; reservations carry a lease. Fail closed: when Redis cannot be reached, every
 * call throws BudgetStoreUnavailable and the proxy refuses to pay; when Redis answers but has
 * lost its state (epoch.ts explains the epoch and each case), the same, until an operator
 * restores or resets the counters.
 * Amounts are whole atomic units; Lua numbers are exact up to 2^53 (≈ 900 million USDC), and
 * the config refuses larger limits for this store.
 */

/**
 * Shared by every script that reads or changes counters: the epoch check and the "counter
 * vanished" check, inside the script so no command can slip between the check and the change.
 * Reply {3, 'lost', reason} or {3, 'mismatch', id}. `k:<key>` fields of the epoch record say a
 * counter was made in this epoch (value: when it expires, 0 = never), so a counter evicted or
 * deleted on its own is told apart from one never used.
 */
const PRELUDE = `
local ek = prefix .. ':epoch'
local function lost(reason)
  redis.call('HSET', ek, 'lost', reason)
  return {3, 'lost', reason}
end
local function epochProblem(expected, minGen)
  local e = redis.call('HMGET', ek, 'id', 'lost', 'gen')
  if e[2] then return {3, 'lost', e[2]} end
  if not e[1] then
    redis.call('HSET', ek, 'origin', 'lost', 'lost', ${JSON.stringify(MISSING_RECORD)})
    return {3, 'lost', ${JSON.stringify(MISSING_RECORD)}}
  end
  if e[1] ~= expected then return {3, 'mismatch', e[1]} end
  if tonumber(e[3] or '0') < minGen then
    return lost('its generation went back from ' .. minGen .. ' to ' .. (e[3] or '0') .. ' (a restore from an old snapshot or a failover to a lagging replica)')
  end
  return nil
end
local function vanished(key, wall)
  if redis.call('EXISTS', key) == 1 then return false end
  local made = redis.call('HGET', ek, 'k:' .. key)
  if not made then return false end
  local expires = tonumber(made)
  return expires == 0 or expires > wall
end
`;

const RESERVE = `
local prefix, id, amount, now, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local budgets = ARGV[7]
local expected, minGen, wall = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
${PRELUDE}
local problem = epochProblem(expected, minGen)
if problem then return problem end
local resKey = prefix .. ':res:' .. id
if redis.call('EXISTS', resKey) == 1 then return {2} end
for i = 0, n - 1 do
  local key = ARGV[12 + i*4]
  if vanished(key, wall) then return lost('budget counter ' .. key .. ' vanished (evicted or deleted)') end
end
local function used(kind, key, arg)
  if kind == 'c' then return tonumber(redis.call('GET', key) or '0') end
  local total = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. arg, '+inf')) do
    local a = string.match(m, ':(%d+)$')
    if a then total = total + tonumber(a) end
  end
  return total
end
for i = 0, n - 1 do
  local kind, key, limit, arg = ARGV[11 + i*4], ARGV[12 + i*4], tonumber(ARGV[13 + i*4]), ARGV[14 + i*4]
  local u = used(kind, key, arg)
  if u + amount > limit then return {0, i, tostring(u)} end
end
local keys = {}
for i = 0, n - 1 do
  local kind, key, arg = ARGV[11 + i*4], ARGV[12 + i*4], ARGV[14 + i*4]
  if kind == 'c' then
    if redis.call('EXISTS', key) == 0 then redis.call('HSET', ek, 'k:' .. key, arg) end
    redis.call('INCRBY', key, amount)
    redis.call('PEXPIREAT', key, tonumber(arg))
  else
    if redis.call('EXISTS', key) == 0 then
      redis.call('ZADD', key, 0, '~')
      redis.call('HSET', ek, 'k:' .. key, 0)
    end
    redis.call('ZADD', key, now, id .. ':' .. amount)
    redis.call('ZREMRANGEBYSCORE', key, '(0', now - 400 * 86400000)
  end
  table.insert(keys, {kind, key})
end
redis.call('HSET', resKey, 'state', 'reserved', 'amount', amount, 'keys', cjson.encode(keys), 'budgets', budgets)
redis.call('ZADD', prefix .. ':leases', lease, id)
for _, b in ipairs(cjson.decode(budgets)) do redis.call('INCRBY', prefix .. ':reserved:' .. b, amount) end
return {1, redis.call('HINCRBY', ek, 'gen', 1)}
`;

/** Moves a reservation out of `from`: spent / indeterminate keep the money, released gives it back. */
const FINISH = `
local prefix, id, to, from = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local expected, minGen, wall = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
${PRELUDE}
local problem = epochProblem(expected, minGen)
if problem then return problem end
local resKey = prefix .. ':res:' .. id
if redis.call('HGET', resKey, 'state') ~= from then return {0, tonumber(redis.call('HGET', ek, 'gen') or '0')} end
local amount = tonumber(redis.call('HGET', resKey, 'amount'))
local keys = cjson.decode(redis.call('HGET', resKey, 'keys'))
if to == 'released' then
  for _, k in ipairs(keys) do
    if vanished(k[2], wall) then return lost('budget counter ' .. k[2] .. ' vanished (evicted or deleted)') end
  end
  for _, k in ipairs(keys) do
    if redis.call('EXISTS', k[2]) == 1 then
      if k[1] == 'c' then
        local v = tonumber(redis.call('GET', k[2]) or '0') - amount
        if v < 0 then v = 0 end
        redis.call('SET', k[2], v, 'KEEPTTL')
      else
        redis.call('ZREM', k[2], id .. ':' .. amount)
      end
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
return {1, redis.call('HINCRBY', ek, 'gen', 1)}
`;

/** The epoch check alone: what an idle replica and /readyz run. */
const VERIFY = `
local prefix, expected, minGen = ARGV[1], ARGV[2], tonumber(ARGV[3])
${PRELUDE}
local problem = epochProblem(expected, minGen)
if problem then return problem end
return {1, tonumber(redis.call('HGET', ek, 'gen') or '0')}
`;

const READ = `
local ek = ARGV[1] .. ':epoch'
return {redis.call('EXISTS', ek), redis.call('HMGET', ek, ${EPOCH_FIELDS.map((f) => `'${f}'`).join(", ")})}
`;

/**
 * The first start of a deployment: an `init` epoch, only where no record is. Budget keys left
 * by an earlier epoch (`reserved:<budget>` is never deleted) mean the record was evicted or
 * deleted, not that nothing was ever spent: then a tombstone instead.
 */
const INIT = `
local prefix, id, at = ARGV[1], ARGV[2], ARGV[3]
local ek = prefix .. ':epoch'
if redis.call('EXISTS', ek) == 1 then return 0 end
for i = 4, #ARGV do
  if redis.call('EXISTS', prefix .. ':reserved:' .. ARGV[i]) == 1 then
    redis.call('HSET', ek, 'origin', 'lost', 'at', at, 'lost', 'Redis holds budget keys of an earlier epoch but no epoch record (it was evicted or deleted)')
    return 2
  end
end
redis.call('HSET', ek, 'id', id, 'origin', 'init', 'at', at, 'gen', 0)
return 1
`;

/** Where no record is, a tombstone saying why: replicas started later refuse too. */
const TOMBSTONE = `
local ek = ARGV[1] .. ':epoch'
if redis.call('EXISTS', ek) == 1 then return 0 end
redis.call('HSET', ek, 'origin', 'lost', 'lost', ARGV[2])
return 1
`;

/** Marks epoch ARGV[2] lost, unless it changed meanwhile. */
const FLAG = `
local ek = ARGV[1] .. ':epoch'
if redis.call('HGET', ek, 'id') ~= ARGV[2] or redis.call('HEXISTS', ek, 'lost') == 1 then return 0 end
redis.call('HSET', ek, 'lost', ARGV[3])
return 1
`;

/** Drops the `k:` marks of counters that expired on schedule. */
const PRUNE = `
local ek = ARGV[1] .. ':epoch'
if redis.call('HGET', ek, 'id') ~= ARGV[2] then return 0 end
local wall, dropped = tonumber(ARGV[3]), 0
local all = redis.call('HGETALL', ek)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'k:' then
    local expires = tonumber(all[i + 1])
    if expires and expires > 0 and expires <= wall then
      redis.call('HDEL', ek, all[i])
      dropped = dropped + 1
    end
  end
end
return dropped
`;

export interface RedisBudgetOptions {
  url: string;
  /** Every key starts with this; replicas sharing budgets share the prefix. */
  prefix: string;
  commandTimeoutMs?: number;
  /** This replica's durable memory of the epoch and its ledger (default: the process only). */
  memory?: EpochMemory;
  /** Configured budget names: their leftover keys tell an evicted epoch record from a fresh start. */
  budgetNames?: readonly string[];
  /** How often an idle replica checks the epoch (ms); 0 = only when used. */
  watchIntervalMs?: number;
}

type Reply = (number | string)[];

type ScriptRedis = Redis & {
  stokaReserve(...args: (string | number)[]): Promise<Reply>;
  stokaFinish(...args: (string | number)[]): Promise<Reply>;
  stokaVerify(...args: (string | number)[]): Promise<Reply>;
  stokaRead(prefix: string): Promise<[number, (string | null)[]]>;
  stokaInit(...args: (string | number)[]): Promise<number>;
  stokaTombstone(prefix: string, reason: string): Promise<number>;
  stokaFlag(prefix: string, id: string, reason: string): Promise<number>;
  stokaPrune(prefix: string, id: string, wall: number): Promise<number>;
};

type EpochState =
  { kind: "unknown" } | { kind: "ok"; id: string; origin: string } | { kind: "lost"; reason: string };

function defineBudgetScripts(redis: Redis): ScriptRedis {
  const scripts: Record<string, string> = {
    stokaReserve: RESERVE,
    stokaFinish: FINISH,
    stokaVerify: VERIFY,
    stokaRead: READ,
    stokaInit: INIT,
    stokaTombstone: TOMBSTONE,
    stokaFlag: FLAG,
    stokaPrune: PRUNE,
  };
  for (const [name, lua] of Object.entries(scripts)) redis.defineCommand(name, { numberOfKeys: 0, lua });
  return redis as ScriptRedis;
}

/** host:port of a Redis URL, never its password. */
export function redisWhere(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || "6379"}`;
  } catch {
    return "the configured Redis";
  }
}

export class RedisBudgetStore implements BudgetStore {
  readonly kind = "redis" as const;
  private readonly redis: ScriptRedis;
  private readonly prefix: string;
  private readonly where: string;
  private readonly memory: EpochMemory;
  private readonly budgetNames: readonly string[];
  private readonly firstConnect: Promise<void>;
  private state: EpochState = { kind: "unknown" };
  /** The highest generation this replica has seen in the current epoch. */
  private maxGen = 0;
  private settling: Promise<void> | undefined;
  private readonly watchers: BudgetStoreWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly watchIntervalMs: number;
  private lastPruneMs = 0;

  constructor(options: RedisBudgetOptions) {
    this.prefix = options.prefix;
    this.where = redisWhere(options.url);
    this.memory = options.memory ?? processMemory();
    this.budgetNames = options.budgetNames ?? [];
    this.watchIntervalMs = options.watchIntervalMs ?? 2000;
    const RedisClient = redisDriver();
    const redis = new RedisClient(options.url, {
      enableOfflineQueue: false, // fail fast when disconnected (fail closed)
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 2000,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * times, 1000),
      lazyConnect: false,
    });
    redis.on("error", () => undefined); // reported through check() and failed calls
    this.redis = defineBudgetScripts(redis);
    // Commands issued before the first connection wait for it (a CLI queries at once); after
    // that, a disconnected Redis fails every call at once.
    this.firstConnect = this.ready(2000).catch(() => undefined);
  }

  /** Resolves once connected (or rejects after `timeoutMs`). */
  async ready(timeoutMs = 5000): Promise<void> {
    if (this.redis.status === "ready") return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.redis.off("ready", onReady);
        reject(new BudgetStoreUnavailable(`Redis at ${this.where} did not become ready`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.redis.once("ready", onReady);
    });
  }

  watch(watcher: BudgetStoreWatcher): void {
    this.watchers.push(watcher);
  }

  stateLost(): string | null {
    return this.state.kind === "lost" ? lostMessage(this.state.reason) : null;
  }

  private setState(next: EpochState): void {
    const before = this.state;
    this.state = next;
    if (next.kind === "lost" && before.kind !== "lost") {
      for (const w of this.watchers) w.lost(lostMessage(next.reason));
    } else if (next.kind === "ok" && before.kind === "lost") {
      for (const w of this.watchers) w.restored(next.id, next.origin);
    }
    if (next.kind !== "unknown") this.startWatching();
  }

  /** Once the epoch is settled, look at it every few seconds even when idle. */
  private startWatching(): void {
    if (this.timer || this.watchIntervalMs <= 0) return;
    this.timer = setInterval(() => {
      this.look().catch(() => undefined); // unreachable: reported by check() and failed calls
    }, this.watchIntervalMs);
    this.timer.unref();
  }

  private async look(): Promise<void> {
    if (this.redis.status !== "ready") return;
    if (this.state.kind !== "ok") return this.settle();
    await this.verifyEpoch();
    const s = this.state as EpochState;
    if (s.kind === "ok" && Date.now() - this.lastPruneMs > 3_600_000) {
      this.lastPruneMs = Date.now();
      await this.redis.stokaPrune(this.prefix, s.id, Date.now());
    }
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    await this.firstConnect;
    try {
      return await fn();
    } catch (e) {
      if (e instanceof BudgetStoreUnavailable) throw e;
      const message = (e as Error).message;
      throw new BudgetStoreUnavailable(
        this.redis.status === "ready"
          ? `Redis: ${message}`
          : `Redis at ${this.where} is not reachable (${message})`,
      );
    }
  }

  private async readRecord(): Promise<EpochRecord | null> {
    const [exists, fields] = await this.call(() => this.redis.stokaRead(this.prefix));
    return parseEpochRecord(exists === 1, fields);
  }

  /** Reads the record and does what epoch.ts decides, until the replica uses an epoch or knows it is lost. */
  private settle(): Promise<void> {
    this.settling ??= this.settleOnce().finally(() => {
      this.settling = undefined;
    });
    return this.settling;
  }

  private async settleOnce(): Promise<void> {
    let facts: LedgerFacts | undefined;
    const ledger = () => (facts ??= this.memory.ledgerFacts(Date.now()));
    for (let round = 0; round < 5; round++) {
      const record = await this.readRecord();
      const d = decideEpoch(record, this.memory.remembered(this.prefix), ledger);
      if (d.action === "use" && record) {
        if (record.gen < this.maxGen) {
          await this.call(() =>
            this.redis.stokaFlag(
              this.prefix,
              d.id,
              `its generation went back from ${this.maxGen} to ${record.gen} (a restore from an old snapshot or a failover to a lagging replica)`,
            ),
          );
          continue;
        }
        this.maxGen = record.gen;
        this.setState({ kind: "ok", id: d.id, origin: record.origin });
        return;
      }
      if (d.action === "adopt" && record) {
        this.memory.remember(this.prefix, { id: d.id, origin: d.origin });
        this.maxGen = record.gen;
        this.setState({ kind: "ok", id: d.id, origin: d.origin });
        return;
      }
      if (d.action === "init") {
        await this.call(() =>
          this.redis.stokaInit(this.prefix, randomUUID(), Date.now(), ...this.budgetNames),
        );
        continue;
      }
      if (d.action === "lost") {
        if (d.mark === "tombstone") {
          await this.call(() => this.redis.stokaTombstone(this.prefix, d.reason));
          continue;
        }
        if (d.mark === "flag" && record?.id) {
          await this.call(() => this.redis.stokaFlag(this.prefix, record.id as string, d.reason));
          continue;
        }
        this.setState({ kind: "lost", reason: d.reason });
        return;
      }
    }
    this.setState({ kind: "lost", reason: "the epoch record kept changing while this replica read it" });
  }

  private unavailable(): BudgetStoreUnavailable {
    const s = this.state;
    return new BudgetStoreUnavailable(
      lostMessage(s.kind === "lost" ? s.reason : "its epoch could not be settled"),
    );
  }

  /**
   * Runs a script that checks the epoch; on "mismatch" re-reads the record once (an operator's
   * restore or reset is taken up here, without a restart) and runs it again.
   */
  private async checked(run: (epoch: string) => Promise<Reply>): Promise<Reply> {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.state.kind !== "ok") await this.settle();
      const s = this.state;
      if (s.kind !== "ok") throw this.unavailable();
      const out = await this.call(() => run(s.id));
      if (out[0] !== 3) return out;
      if (out[1] === "lost") this.setState({ kind: "lost", reason: String(out[2]) });
      else if (this.state.kind === "ok" && this.state.id === s.id) this.state = { kind: "unknown" };
    }
    throw this.unavailable();
  }

  private seen(gen: number | string | undefined): void {
    const g = Number(gen);
    if (Number.isFinite(g) && g > this.maxGen) this.maxGen = g;
  }

  private async verifyEpoch(): Promise<void> {
    const out = await this.checked((epoch) => this.redis.stokaVerify(this.prefix, epoch, this.maxGen));
    this.seen(out[1]);
  }

  /** For reads (`spend`, gauges): fail when the state is known lost, never write a new epoch. */
  private async readable(): Promise<void> {
    if (this.state.kind === "ok") return;
    if (this.state.kind === "lost") {
      await this.settle();
      if ((this.state as EpochState).kind !== "ok") throw this.unavailable();
      return;
    }
    const record = await this.readRecord();
    const d = decideEpoch(record, this.memory.remembered(this.prefix), () =>
      this.memory.ledgerFacts(Date.now()),
    );
    if (d.action === "lost") throw new BudgetStoreUnavailable(lostMessage(d.reason));
  }

  async reserve(r: ReservationRequest, record?: () => void): Promise<ReserveResult> {
    const slots = limitSlots(this.prefix, r.budgets, r.nowMs);
    const groups = slots.flatMap((s) => [s.kind, s.key, s.limit.toString(), s.arg]);
    const names = JSON.stringify(r.budgets.map((b) => b.name));
    let out: Reply;
    try {
      out = await this.checked((epoch) =>
        this.redis.stokaReserve(
          this.prefix,
          r.paymentId,
          r.amount.toString(),
          r.nowMs,
          r.leaseUntilMs,
          slots.length,
          names,
          epoch,
          this.maxGen,
          Date.now(),
          ...groups,
        ),
      );
    } catch (e) {
      // A reply later than the command timeout, or a connection dropped after the script was
      // sent: Redis may have made the reservation, and no ledger row will ever explain it. Take
      // it back; on the same connection this runs after the script. Best effort: if it fails
      // too, the lease keeps the amount counted (never freed silently).
      await this.release(r.paymentId).catch(() => undefined);
      throw e;
    }
    if (out[0] === 1) {
      this.seen(out[1]);
      try {
        record?.();
      } catch (e) {
        await this.release(r.paymentId).catch(() => undefined);
        throw e;
      }
      return { ok: true };
    }
    if (out[0] === 2) throw new Error(`payment id ${r.paymentId} was reserved before`);
    const hit = slots[Number(out[1])];
    if (!hit) throw new Error("Redis reserve script returned an unknown limit");
    return {
      ok: false,
      denial: {
        budget: hit.budget.name,
        period: periodLabel(hit.period.period),
        limit: hit.limit,
        spent: BigInt(String(out[2])),
        price: r.amount,
      },
    };
  }

  private async finish(
    paymentId: string,
    to: "spent" | "released" | "indeterminate",
    from = "reserved",
  ): Promise<boolean> {
    const out = await this.checked((epoch) =>
      this.redis.stokaFinish(this.prefix, paymentId, to, from, epoch, this.maxGen, Date.now()),
    );
    this.seen(out[1]);
    return out[0] === 1;
  }

  async resolveIndeterminate(paymentId: string, charged: boolean): Promise<void> {
    await this.finish(paymentId, charged ? "spent" : "released", "indeterminate");
  }

  async commit(paymentId: string): Promise<void> {
    await this.finish(paymentId, "spent");
  }

  async release(paymentId: string): Promise<void> {
    await this.finish(paymentId, "released");
  }

  async markIndeterminate(paymentId: string): Promise<void> {
    await this.finish(paymentId, "indeterminate");
  }

  async expireLeases(nowMs: number): Promise<string[]> {
    // Lost: nothing to expire until restored (already reported once, not on every sweep).
    if (this.state.kind === "lost") return [];
    const ids = await this.call(() => this.redis.zrangebyscore(redisKeys(this.prefix).leases, "-inf", nowMs));
    const expired: string[] = [];
    for (const id of ids) {
      if (await this.finish(id, "indeterminate", "reserved")) expired.push(id);
    }
    return expired;
  }

  async used(budget: Budget, limit: BudgetLimit, nowMs: number): Promise<bigint> {
    await this.readable();
    const keys = redisKeys(this.prefix);
    const key = limitKey(budget.name, limit);
    if (limit.period.kind === "calendar") {
      const unit = limit.period.unit;
      const v = await this.call(() => this.redis.get(keys.counter(key, bucketStart(unit, nowMs))));
      return BigInt(v ?? "0");
    }
    const since = nowMs - limit.period.seconds * 1000;
    const members = await this.call(() => this.redis.zrangebyscore(keys.rolling(key), `(${since}`, "+inf"));
    return members.reduce((s, m) => s + rollingMemberAmount(m), 0n);
  }

  async reserved(budget: Budget): Promise<bigint> {
    await this.readable();
    return BigInt(
      (await this.call(() => this.redis.get(redisKeys(this.prefix).reserved(budget.name)))) ?? "0",
    );
  }

  async check(): Promise<string | null> {
    try {
      await this.call(() => this.redis.ping());
    } catch (e) {
      return `budget store (Redis) unreachable: ${(e as Error).message}`;
    }
    try {
      await this.verifyEpoch();
      return null;
    } catch (e) {
      return this.stateLost() ?? `budget store (Redis): ${(e as Error).message}`;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.redis.disconnect();
  }
}
