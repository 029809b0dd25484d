import type pg from "pg";
import { isSecurityEventCode } from "./codes.js";
import type { SecurityEvent, SecurityEventCode, StoredSecurityEvent } from "./codes.js";
import { DEFAULT_LIST_LIMIT, DEFAULT_MAX_ROWS } from "./event-store.js";
import type { EventQuery, EventStore } from "./event-store.js";

/**
 * Security events in the PostgreSQL database the replicas share (table `security_events`).
 * The caller brings the pool (src/store/postgres-connection.ts makes one with every wait
 * bounded). `migrate` is idempotent and safe for replicas starting together: one transaction
 * under an advisory lock of its own, `CREATE … IF NOT EXISTS`. Ids come from one sequence, so
 * the prune keeps every id above MAX(id) − maxRows, as the SQLite store does.
 */
/** pg_advisory_xact_lock key for this migration: "stoka-security-events" folded into an int. */
const MIGRATION_LOCK = 0x5ec_e7e5;
const APPEND_LOCK = MIGRATION_LOCK + 1;

interface Row {
  id: string;
  at_ms: string;
  code: string;
  client: string;
  host: string;
  route: string;
  detail: string;
}

export class PostgresEventStore implements EventStore {
  private migrated: Promise<void> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly maxRows = DEFAULT_MAX_ROWS,
  ) {}

  /** Creates the table and its indexes when absent; every call after the first is free. */
  migrate(): Promise<void> {
    this.migrated ??= (async () => {
      const c = await this.pool.connect();
      try {
        await c.query("BEGIN");
        await c.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
        await c.query(`
          CREATE TABLE IF NOT EXISTS security_events (
            id BIGSERIAL PRIMARY KEY,
            at_ms BIGINT NOT NULL,
            code TEXT NOT NULL,
            client TEXT NOT NULL,
            host TEXT NOT NULL,
            route TEXT NOT NULL,
            detail TEXT NOT NULL
          );
          CREATE INDEX IF NOT EXISTS security_events_at ON security_events (at_ms);
          CREATE INDEX IF NOT EXISTS security_events_code_at ON security_events (code, at_ms);
        `);
        await c.query("COMMIT");
      } catch (e) {
        await c.query("ROLLBACK").catch(() => undefined);
        throw e;
      } finally {
        c.release();
      }
    })().catch((e: unknown) => {
      // Tried again on the next call, whatever failed: a connect that failed while the database
      // was away (outside the transaction above) must not stay the answer forever.
      this.migrated = undefined;
      throw e;
    });
    return this.migrated;
  }

  async append(batch: readonly SecurityEvent[]): Promise<number> {
    if (batch.length === 0) return 0;
    await this.migrate();
    const c = await this.pool.connect();
    try {
      await c.query("BEGIN");
      // One writer at a time across replicas: otherwise two batches each prune before seeing
      // the other's rows and the table passes its cap. Batches are few (rate-capped, batched).
      await c.query("SELECT pg_advisory_xact_lock($1)", [APPEND_LOCK]);
      await c.query(
        `INSERT INTO security_events (at_ms, code, client, host, route, detail)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])`,
        [
          batch.map((e) => e.atMs),
          batch.map((e) => e.code),
          batch.map((e) => e.client),
          batch.map((e) => e.host),
          batch.map((e) => e.route),
          batch.map((e) => e.detail),
        ],
      );
      const pruned = await c.query(
        "DELETE FROM security_events WHERE id <= (SELECT MAX(id) FROM security_events) - $1",
        [this.maxRows],
      );
      await c.query("COMMIT");
      return pruned.rowCount ?? 0;
    } catch (e) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }

  async list(query: EventQuery = {}): Promise<StoredSecurityEvent[]> {
    await this.migrate();
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (query.sinceMs !== undefined) {
      args.push(query.sinceMs);
      where.push(`at_ms >= $${args.length}`);
    }
    if (query.code !== undefined) {
      args.push(query.code);
      where.push(`code = $${args.length}`);
    }
    args.push(Math.max(1, Math.min(query.limit ?? DEFAULT_LIST_LIMIT, this.maxRows)));
    const r = await this.pool.query<Row>(
      `SELECT * FROM (SELECT * FROM security_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
       ORDER BY id DESC LIMIT $${args.length}) newest ORDER BY id`,
      args,
    );
    const out: StoredSecurityEvent[] = [];
    for (const row of r.rows) {
      if (!isSecurityEventCode(row.code)) continue;
      out.push({
        id: Number(row.id),
        atMs: Number(row.at_ms),
        code: row.code,
        client: row.client,
        host: row.host,
        route: row.route,
        detail: row.detail,
      });
    }
    return out;
  }

  async countsByCode(sinceMs = 0): Promise<Partial<Record<SecurityEventCode, number>>> {
    await this.migrate();
    const r = await this.pool.query<{ code: string; n: string }>(
      "SELECT code, COUNT(*) AS n FROM security_events WHERE at_ms >= $1 GROUP BY code",
      [sinceMs],
    );
    const out: Partial<Record<SecurityEventCode, number>> = {};
    for (const row of r.rows) if (isSecurityEventCode(row.code)) out[row.code] = Number(row.n);
    return out;
  }
}
