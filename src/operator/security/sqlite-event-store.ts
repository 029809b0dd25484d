import type { Db } from "../../storage/sqlite.js";
import { isSecurityEventCode } from "./codes.js";
import type { SecurityEvent, SecurityEventCode, StoredSecurityEvent } from "./codes.js";
import { DEFAULT_LIST_LIMIT, DEFAULT_MAX_ROWS } from "./event-store.js";
import type { EventQuery, EventStore } from "./event-store.js";

/**
 * Security events in the proxy's own SQLite file (table `security_events`, created if absent:
 * an idempotent migration). Row ids only grow (AUTOINCREMENT), so "the newest `maxRows`" is
 * every id above MAX(id) − maxRows: the prune is one indexed delete, and a flood of refusals
 * can never grow the table past its cap.
 */
interface Row {
  id: number;
  at_ms: number;
  code: string;
  client: string;
  host: string;
  route: string;
  detail: string;
}

export function migrateSecurityEvents(db: Db): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS security_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      at_ms INTEGER NOT NULL,
      code TEXT NOT NULL,
      client TEXT NOT NULL,
      host TEXT NOT NULL,
      route TEXT NOT NULL,
      detail TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS security_events_at ON security_events (at_ms);
    CREATE INDEX IF NOT EXISTS security_events_code_at ON security_events (code, at_ms);
  `);
}

function fromRow(r: Row): StoredSecurityEvent | null {
  if (!isSecurityEventCode(r.code)) return null; // a code a newer version wrote
  return {
    id: r.id,
    atMs: r.at_ms,
    code: r.code,
    client: r.client,
    host: r.host,
    route: r.route,
    detail: r.detail,
  };
}

export class SqliteEventStore implements EventStore {
  private readonly insert;
  private readonly prune;
  private readonly appendAll;

  constructor(
    private readonly db: Db,
    private readonly maxRows = DEFAULT_MAX_ROWS,
  ) {
    migrateSecurityEvents(db);
    this.insert = db.prepare(
      "INSERT INTO security_events (at_ms, code, client, host, route, detail) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.prune = db.prepare(
      "DELETE FROM security_events WHERE id <= (SELECT MAX(id) FROM security_events) - ?",
    );
    this.appendAll = db.transaction((batch: readonly SecurityEvent[]): number => {
      for (const e of batch) this.insert.run(e.atMs, e.code, e.client, e.host, e.route, e.detail);
      return this.prune.run(this.maxRows).changes;
    });
  }

  append(batch: readonly SecurityEvent[]): Promise<number> {
    if (batch.length === 0) return Promise.resolve(0);
    return Promise.resolve(this.appendAll(batch));
  }

  list(query: EventQuery = {}): Promise<StoredSecurityEvent[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (query.sinceMs !== undefined) {
      where.push("at_ms >= ?");
      args.push(query.sinceMs);
    }
    if (query.code !== undefined) {
      where.push("code = ?");
      args.push(query.code);
    }
    args.push(Math.max(1, Math.min(query.limit ?? DEFAULT_LIST_LIMIT, this.maxRows)));
    const rows = this.db
      .prepare(
        `SELECT * FROM (SELECT * FROM security_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?) ORDER BY id`,
      )
      .all(...args) as Row[];
    return Promise.resolve(rows.map(fromRow).filter((e): e is StoredSecurityEvent => e !== null));
  }

  countsByCode(sinceMs = 0): Promise<Partial<Record<SecurityEventCode, number>>> {
    const rows = this.db
      .prepare("SELECT code, COUNT(*) AS n FROM security_events WHERE at_ms >= ? GROUP BY code")
      .all(sinceMs) as { code: string; n: number }[];
    const out: Partial<Record<SecurityEventCode, number>> = {};
    for (const r of rows) if (isSecurityEventCode(r.code)) out[r.code] = r.n;
    return Promise.resolve(out);
  }
}
