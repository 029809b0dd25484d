import type pg from "pg";
import { pgDriver } from "../storage/drivers.js";

/**
 * How the PostgreSQL payment store talks to its database: a bounded pool whose every wait has
 * a limit (connecting, a statement, a lock, a transaction left idle by a stalled process), and
 * the rule that tells "the database cannot be used right now" (fail closed, retry later) from
 * a mistake in a statement.
 */
export interface PostgresStoreOptions {
  /** postgres://user[:password]@host:port/database (the password from the environment). */
  url: string;
  /** Connections per process (default 10). */
  poolMax?: number;
  /** Waiting for a connection, new or from the pool (default 5000 ms). */
  connectTimeoutMs?: number;
  /** One statement, including waiting for a lock (default 5000 ms). */
  statementTimeoutMs?: number;
  /**
   * A transaction left open and idle, e.g. by a frozen process or a partition, is ended by the
   * server (default 3000 ms). Every write holds the chain head lock, so this bounds how long one
   * stalled replica can hold up the others; it is kept below the lock wait, so they are delayed,
   * not refused. Our transactions never idle: only hashing runs between their statements.
   */
  idleInTransactionTimeoutMs?: number;
}

export const POOL_DEFAULTS = {
  poolMax: 10,
  connectTimeoutMs: 5000,
  statementTimeoutMs: 5000,
  idleInTransactionTimeoutMs: 3000,
} as const;

/** host:port/database of a database URL, never its user's password. */
export function databaseWhere(url: string): string {
  try {
    const u = new URL(url);
    const db = decodeURIComponent(u.pathname.replace(/^\//, "")) || "(default database)";
    return `${u.hostname || "localhost"}:${u.port || "5432"}/${db}`;
  } catch {
    return "the configured database";
  }
}

/** The URL's password, to keep out of any message built from a driver error. */
function passwordOf(url: string): string | null {
  try {
    const p = decodeURIComponent(new URL(url).password);
    return p.length > 0 ? p : null;
  } catch {
    return null;
  }
}

/** A driver or server error's text, with the URL's password (should it appear) replaced. */
export function errorText(e: unknown, url: string): string {
  const text = e instanceof Error ? e.message || e.name : String(e);
  const password = passwordOf(url);
  return password ? text.split(password).join("REDACTED") : text;
}

/** SQLSTATE of an error the server sent; null for the driver's own (socket, timeout) errors. */
export function sqlState(e: unknown): string | null {
  return e instanceof pgDriver().DatabaseError && typeof e.code === "string" ? e.code : null;
}

/**
 * A statement's own fault (bad data, a broken constraint, a statement the server does not
 * understand): a bug to report, not an outage. SQLSTATE classes 22, 23 and 42 (RFC-less, see
 * PostgreSQL's errcodes table). Everything else a driver throws (refused, reset, timed out,
 * shutting down, too many connections, the database missing) means the store cannot be used
 * now, and the caller fails closed.
 */
export function isStatementFault(e: unknown): boolean {
  const state = sqlState(e);
  return state !== null && ["22", "23", "42"].includes(state.slice(0, 2));
}

/** Serialization failure or deadlock: the transaction was rolled back and may be run again. */
export function isRetryable(e: unknown): boolean {
  const state = sqlState(e);
  return state === "40001" || state === "40P01";
}

export function createPool(options: PostgresStoreOptions): pg.Pool {
  const statementTimeout = options.statementTimeoutMs ?? POOL_DEFAULTS.statementTimeoutMs;
  const { Pool } = pgDriver();
  const pool = new Pool({
    connectionString: options.url,
    max: options.poolMax ?? POOL_DEFAULTS.poolMax,
    connectionTimeoutMillis: options.connectTimeoutMs ?? POOL_DEFAULTS.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    // Server side: a statement (or a lock wait) never runs past this.
    statement_timeout: statementTimeout,
    lock_timeout: statementTimeout,
    idle_in_transaction_session_timeout:
      options.idleInTransactionTimeoutMs ?? POOL_DEFAULTS.idleInTransactionTimeoutMs,
    // Client side: a server that stopped answering (a partition) cannot hold a call forever.
    query_timeout: statementTimeout + 1000,
    keepAlive: true,
    application_name: "stoka-proxy",
  });
  // An idle connection that dies (server restart, terminated backend) is dropped from the pool;
  // without a listener the error would end the process.
  pool.on("error", () => undefined);
  return pool;
}
