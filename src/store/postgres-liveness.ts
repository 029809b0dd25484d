import { randomInt } from "node:crypto";
import type pg from "pg";
import { pgDriver } from "../storage/drivers.js";
import { POOL_DEFAULTS } from "./postgres-connection.js";
import type { PostgresStoreOptions } from "./postgres-connection.js";

/**
 * How replicas tell a writer that stopped from one still running, through the database
 * itself: each store holds a session-level advisory lock named by its writer id on a
 * connection of its own for as long as it runs. A process that dies (even by `kill -9`) loses
 * its connection and so the lock; another replica that can take the lock knows its payments
 * were interrupted. A writer whose connection merely dropped looks stopped until it reconnects:
 * its open payments may be marked indeterminate, and the answers it then records still apply
 * (payment-transitions.ts), so the mistake costs a ledger row, never money.
 */
export const WRITER_LOCKS = 0x53544b50; // "STKP": the first key of every writer lock

const RETRY_MS = 1000;

export class WriterLiveness {
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Whether this process holds its writer lock right now. */
  held = false;
  /** Fixed once a lock was taken: payments are written under it. */
  owner = randomInt(1, 2 ** 31 - 1);
  private everHeld = false;

  constructor(private readonly options: PostgresStoreOptions) {}

  /** Takes the lock (or schedules another try); resolves after the first attempt either way. */
  async start(): Promise<void> {
    if (this.closed || this.client) return;
    const { Client } = pgDriver();
    const client = new Client({
      connectionString: this.options.url,
      connectionTimeoutMillis: this.options.connectTimeoutMs ?? POOL_DEFAULTS.connectTimeoutMs,
      query_timeout: (this.options.statementTimeoutMs ?? POOL_DEFAULTS.statementTimeoutMs) + 1000,
      keepAlive: true,
      application_name: "stoka-proxy writer",
    });
    this.client = client;
    const lost = () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.held = false;
      client.end().catch(() => undefined);
      this.retry();
    };
    client.on("error", lost);
    client.on("end", lost);
    try {
      await client.connect();
      for (let tries = 0; tries < 5; tries++) {
        const r = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1, $2) AS ok", [
          WRITER_LOCKS,
          this.owner,
        ]);
        if (r.rows[0]?.ok) {
          this.held = true;
          this.everHeld = true;
          return;
        }
        // Another running writer drew the same id: draw again, unless payments use this one.
        if (this.everHeld) break;
        this.owner = randomInt(1, 2 ** 31 - 1);
      }
      lost();
    } catch {
      lost();
    }
  }

  private retry(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.start();
    }, RETRY_MS);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    const client = this.client;
    this.client = undefined;
    this.held = false;
    await client?.end().catch(() => undefined);
  }
}
