import { randomBytes } from "node:crypto";
import pg from "pg";

/**
 * The machine's PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), shared: each test
 * gets a database of its own (`stoka_test_<random>`), created here and dropped afterwards;
 * nothing else on the server is touched.
 */
const HOST = "127.0.0.1";
const PORT = 5432;
const ADMIN_URL = `postgres://postgres@${HOST}:${PORT}/postgres`;
export const START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

let reachable: Promise<void> | undefined;

/** Fails at once, with the command that starts it, when PostgreSQL does not answer. */
export function requirePostgres(): Promise<void> {
  reachable ??= (async () => {
    const c = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 2000 });
    try {
      await c.connect();
      await c.query("SELECT 1");
    } catch (e) {
      throw new Error(
        `PostgreSQL does not answer on ${HOST}:${PORT} (${(e as Error).message}). Start it with: ${START_POSTGRES} (or run bash test/setup.sh)`,
        { cause: e },
      );
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return reachable;
}

export interface TestDatabase {
  name: string;
  url: string;
  /** The same database through another host:port (a relay), with an optional password. */
  urlVia(port: number, password?: string): string;
  /** Runs SQL as the superuser in this database (what an operator, or an intruder, can do). */
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, params?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  await requirePostgres();
  const name = `stoka_test_${randomBytes(6).toString("hex")}`;
  await admin(async (c) => {
    await c.query(`CREATE DATABASE ${name}`);
  });
  const url = `postgres://postgres@${HOST}:${PORT}/${name}`;
  return {
    name,
    url,
    urlVia: (port, password) =>
      `postgres://postgres${password ? `:${encodeURIComponent(password)}` : ""}@${HOST}:${port}/${name}`,
    sql: async <R extends pg.QueryResultRow>(text: string, params: unknown[] = []) => {
      const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      await c.connect();
      try {
        return (await c.query<R>(text, params)).rows;
      } finally {
        await c.end();
      }
    },
    drop: () =>
      admin(async (c) => {
        // FORCE ends this database's sessions (a killed test's pools) first.
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }),
  };
}

async function admin(fn: (c: pg.Client) => Promise<void>): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    await fn(c);
  } finally {
    await c.end();
  }
}
