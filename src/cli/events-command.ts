import { existsSync } from "node:fs";
import type { ProxyConfig } from "../config/config.js";
import { SECURITY_EVENT_CODES, isSecurityEventCode } from "../operator/security/codes.js";
import type { StoredSecurityEvent } from "../operator/security/codes.js";
import type { EventStore } from "../operator/security/event-store.js";
import { SqliteEventStore } from "../operator/security/sqlite-event-store.js";
import { databasePath } from "../payment/stores.js";
import { openDatabase } from "../storage/sqlite.js";

/**
 * `stoka-proxy events [--since ISO] [--json] [--code C] [--limit N]`: the security events the
 * proxy stored (docs/operations.md, Security events), oldest first. Exit 2 on a bad flag.
 */
type Out = (text: string) => void;

export interface EventsFlags {
  since?: string | undefined;
  code?: string | undefined;
  json: boolean;
  limit?: string | undefined;
}

const USAGE = `usage: stoka-proxy events [--since ISO-DATE] [--code ${SECURITY_EVENT_CODES.join("|")}] [--limit N] [--json]\n`;

function toJson(e: StoredSecurityEvent): Record<string, string | number> {
  return {
    id: e.id,
    at: new Date(e.atMs).toISOString(),
    code: e.code,
    client: e.client,
    host: e.host,
    route: e.route,
    detail: e.detail,
  };
}

/** One event a line: time, code, client, host, route, detail (tab-free, already bounded). */
function toLine(e: StoredSecurityEvent): string {
  const cell = (s: string) => (s === "" ? "-" : s);
  return `${new Date(e.atMs).toISOString()}  ${e.code.padEnd(20)}  ${cell(e.client)}  ${cell(e.host)}  ${cell(e.route)}  ${e.detail}\n`;
}

/** Lists from `store`, or from this config's SQLite file when no store is given. */
export async function eventsCommand(
  config: ProxyConfig,
  flags: EventsFlags,
  out: Out,
  err: Out,
  store?: EventStore,
): Promise<number> {
  const sinceMs = flags.since === undefined ? undefined : Date.parse(flags.since);
  if (sinceMs !== undefined && Number.isNaN(sinceMs)) {
    err(`--since must be an ISO 8601 date or time, got ${flags.since}\n${USAGE}`);
    return 2;
  }
  if (flags.code !== undefined && !isSecurityEventCode(flags.code)) {
    err(`--code must be one of ${SECURITY_EVENT_CODES.join(", ")}\n${USAGE}`);
    return 2;
  }
  const limit = flags.limit === undefined ? undefined : Number(flags.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    err(`--limit must be a positive whole number\n${USAGE}`);
    return 2;
  }
  const query = {
    ...(sinceMs === undefined ? {} : { sinceMs }),
    ...(flags.code !== undefined && isSecurityEventCode(flags.code) ? { code: flags.code } : {}),
    ...(limit === undefined ? {} : { limit }),
  };
  let events: StoredSecurityEvent[];
  if (store) events = await store.list(query);
  else {
    const path = databasePath(config);
    if (!existsSync(path)) events = [];
    else {
      const db = openDatabase(path);
      try {
        events = await new SqliteEventStore(db).list(query);
      } finally {
        db.close();
      }
    }
  }
  if (flags.json) {
    out(`${JSON.stringify(events.map(toJson), null, 2)}\n`);
    return 0;
  }
  if (events.length === 0) {
    out("no security events stored\n");
    return 0;
  }
  for (const e of events) out(toLine(e));
  return 0;
}
