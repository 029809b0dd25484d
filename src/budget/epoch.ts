/**
 * Why a Redis budget store needs an epoch, and the rule that decides what a replica does with
 * it. Pure: no I/O (the store reads the record and acts on the decision).
 *
 * Redis can lose its data and come back answering: a restart without persistence, FLUSHDB, a
 * failover to an empty or lagging replica, maxmemory eviction. Empty counters look exactly like
 * "nothing spent yet", so without a marker every budget silently starts again from zero. The
 * marker is the epoch record (`<prefix>:epoch`, a hash): a random id, how it was made (`init`
 * on the very first start, `restore` / `reset` by an operator), a generation number every
 * change bumps, and one field per counter created in this epoch. Every script that reads or
 * changes counters checks, inside the same atomic script, that the record is there, carries the
 * id this replica holds, is not marked lost, has not gone back in generation, and that no
 * counter it made has vanished. Anything else is loss, and a loss is written into the record
 * (`lost`), so every replica, and every replica started later, refuses to pay until an
 * operator restores the counters from the ledgers or resets them.
 *
 * The cases, and why each fails closed:
 * - A fresh deployment (no record, no remembered epoch, no payment in a current period in the
 *   local ledger): the replica creates an `init` epoch, only if the key is still absent.
 * - Redis came back empty while replicas ran: they hold the epoch in memory and in their local
 *   SQLite database; their next script (or the idle check every few seconds) finds no record,
 *   writes a `lost` tombstone in its place and refuses.
 * - Every replica restarted and Redis is empty: each remembers, in its own database, the epoch
 *   it last used (and its ledger holds payments in a current period): no record → tombstone.
 * - A replica meets an epoch other than the one it remembers: accepted only when an operator
 *   made it (`restore` that included this replica's ledger up to its last payment, or `reset`);
 *   an `init` epoch means some replica initialised an empty Redis over lost state: the replica
 *   marks it lost for everybody.
 * - A replica that remembers nothing (its first start) but whose ledger holds payments in a
 *   current period (an upgrade from a version without epochs) trusts only an operator's epoch.
 * - The epoch record itself evicted while counters remain: init refuses when budget keys of
 *   an earlier epoch are still there; running replicas see the record missing.
 *
 * What it cannot see: every replica's local database gone as well as Redis (no durable memory
 * is left anywhere), and a brand-new replica that initialises an empty Redis before any running
 * replica has looked (running replicas look on every payment and at least every few seconds,
 * and then mark it lost). Both end with one ledger database for every replica.
 */
export type EpochOrigin = "init" | "restore" | "reset";

export interface EpochLedgerMark {
  /** The ledger database's identity (a random id stored in it). */
  id: string;
  /** The last ledger row the restore read from it. */
  head: number;
}

/** The epoch record as read from Redis; `id` is null on a tombstone. */
export interface EpochRecord {
  id: string | null;
  origin: string;
  atMs: number;
  gen: number;
  lost: string | null;
  /** Restore only: the ledgers it summed. */
  ledgers: EpochLedgerMark[];
}

export interface RememberedEpoch {
  id: string;
  origin: string;
}

/** A payment this replica's ledger counts as spent in a current budget period. */
export interface CurrentPayment {
  paymentId: string;
  /** Its first ledger row. */
  firstSeq: number;
}

export interface LedgerFacts {
  id: string;
  current: CurrentPayment[];
}

export type EpochDecision =
  | { action: "use"; id: string }
  | { action: "adopt"; id: string; origin: string }
  | { action: "init" }
  /** mark: write a tombstone where no record is, flag the record as lost, or nothing. */
  | { action: "lost"; reason: string; mark: "tombstone" | "flag" | "none" };

export const RESTORE_HINT =
  "rebuild the counters from every replica's ledger with `stoka-proxy budgets restore --ledger FILE` " +
  "(one --ledger per replica's stoka-proxy.db), or start from zero with `stoka-proxy budgets reset --yes`";

/** The text users see (402 reason, /readyz, the log line). */
export function lostMessage(reason: string): string {
  return `the budget store (Redis) lost its state: ${reason}; nothing is paid until an operator restores it: ${RESTORE_HINT}`;
}

export const MISSING_RECORD =
  "its epoch record is missing (a Redis restart without persistence, FLUSHDB, a failover to an empty replica or eviction)";

function unseen(record: EpochRecord, ledger: LedgerFacts): CurrentPayment[] {
  const mark = record.ledgers.find((l) => l.id === ledger.id);
  return ledger.current.filter((p) => mark === undefined || p.firstSeq > mark.head);
}

/**
 * What a replica does with the record it read. `ledger` is called only when needed (it reads
 * the whole local ledger).
 */
export function decideEpoch(
  record: EpochRecord | null,
  remembered: RememberedEpoch | null,
  ledger: () => LedgerFacts,
): EpochDecision {
  if (record === null) {
    if (remembered) {
      return {
        action: "lost",
        reason: `Redis holds no budget epoch although this replica last used epoch ${remembered.id}: ${MISSING_RECORD}`,
        mark: "tombstone",
      };
    }
    const facts = ledger();
    if (facts.current.length > 0) {
      return {
        action: "lost",
        reason: `Redis holds no budget epoch although this replica's ledger has ${facts.current.length} payment(s) in the current budget periods: ${MISSING_RECORD}`,
        mark: "tombstone",
      };
    }
    return { action: "init" };
  }
  if (record.lost !== null) return { action: "lost", reason: record.lost, mark: "none" };
  if (record.id === null) return { action: "lost", reason: MISSING_RECORD, mark: "none" };
  if (remembered?.id === record.id) return { action: "use", id: record.id };
  if (record.origin === "reset") return { action: "adopt", id: record.id, origin: record.origin };
  if (record.origin === "restore") {
    const missed = unseen(record, ledger());
    if (missed.length === 0) return { action: "adopt", id: record.id, origin: record.origin };
    return {
      action: "lost",
      reason: `the restore that made epoch ${record.id} did not include ${missed.length} payment(s) of this replica's ledger ${ledger().id}; run it again with every replica's ledger`,
      mark: "flag",
    };
  }
  // An `init` epoch this replica did not make.
  if (remembered) {
    return {
      action: "lost",
      reason: `epoch ${remembered.id} was replaced by a first-start initialisation (${record.id}): Redis lost its data while replicas ran`,
      mark: "flag",
    };
  }
  const facts = ledger();
  if (facts.current.length > 0) {
    return {
      action: "lost",
      reason: `this replica's ledger has ${facts.current.length} payment(s) in the current budget periods that epoch ${record.id} (made by a first start) does not count`,
      mark: "flag",
    };
  }
  return { action: "adopt", id: record.id, origin: record.origin };
}

/** The record from EXISTS and HMGET of EPOCH_FIELDS; null when the key is absent. */
export function parseEpochRecord(exists: boolean, fields: (string | null)[]): EpochRecord | null {
  if (!exists) return null;
  const [id, origin, at, gen, lost, ledgers] = fields;
  let marks: EpochLedgerMark[] = [];
  try {
    const parsed = JSON.parse(ledgers ?? "[]") as unknown;
    if (Array.isArray(parsed))
      marks = parsed.filter(
        (m): m is EpochLedgerMark =>
          typeof m === "object" && m !== null && typeof m.id === "string" && typeof m.head === "number",
      );
  } catch {
    // a malformed list includes nobody: replicas with current payments will refuse it
  }
  return {
    id: id ?? null,
    origin: origin ?? "unknown",
    atMs: Number(at ?? 0),
    gen: Number(gen ?? 0),
    lost: lost ?? null,
    ledgers: marks,
  };
}

export const EPOCH_FIELDS = ["id", "origin", "at", "gen", "lost", "ledgers"] as const;
