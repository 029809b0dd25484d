import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { securityEvent } from "../../src/operator/security/codes.js";
import { PostgresEventStore } from "../../src/operator/security/postgres-event-store.js";
import { SecurityEventRecorder } from "../../src/operator/security/recorder.js";
import { createTestDatabase } from "../support/postgres.js";
import type { TestDatabase } from "../support/postgres.js";

/**
 * Security events in a real PostgreSQL database (its own, created for this test): replicas
 * migrating at the same time create the table once, batches from two recorders share one
 * table, the row cap holds, queries filter as the SQLite store's do.
 */
let db: TestDatabase;
const pools: pg.Pool[] = [];
const pool = () => {
  const p = new pg.Pool({ connectionString: db.url, max: 3, connectionTimeoutMillis: 5_000 });
  // An idle client ended by the server (the database dropped at the end) is no test failure.
  p.on("error", () => undefined);
  pools.push(p);
  return p;
};

beforeAll(async () => {
  db = await createTestDatabase();
}, 30_000);

afterAll(async () => {
  for (const p of pools) await p.end();
  await db?.drop();
});

describe("PostgresEventStore", () => {
  it("migrates once for replicas starting together, and again harmlessly", async () => {
    const stores = Array.from({ length: 4 }, () => new PostgresEventStore(pool()));
    await Promise.all(stores.map((s) => s.migrate()));
    await new PostgresEventStore(pool()).migrate();
    const tables = await db.sql<{ n: string }>(
      "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_name = 'security_events'",
    );
    expect(tables[0]?.n).toBe("1");
  });

  it("concurrent batches from several replicas never leave more than the cap", async () => {
    await db.sql("TRUNCATE security_events");
    const replicas = [
      new PostgresEventStore(pool(), 30),
      new PostgresEventStore(pool(), 30),
      new PostgresEventStore(pool(), 30),
    ];
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 9 }, (_, i) =>
          (replicas[i % 3] as PostgresEventStore).append(
            Array.from({ length: 10 }, (_, j) =>
              securityEvent("terms_rejected", round * 1_000 + i * 10 + j, {}),
            ),
          ),
        ),
      );
      const n = await db.sql<{ n: string }>("SELECT COUNT(*) AS n FROM security_events");
      expect(n[0]?.n).toBe("30");
    }
  }, 30_000);

  it("two replicas' recorders write into one table; the cap holds; queries filter", async () => {
    const a = new PostgresEventStore(pool(), 50);
    const b = new PostgresEventStore(pool(), 50);
    const ra = new SecurityEventRecorder(a, { perCodePerSecond: 1_000, flushMs: 5, batchSize: 5 });
    const rb = new SecurityEventRecorder(b, { perCodePerSecond: 1_000, flushMs: 5, batchSize: 5 });
    for (let i = 0; i < 40; i++) {
      ra.record(securityEvent("proxy_auth_required", 1_000 + i, { host: "a", detail: "x" }));
      rb.record(securityEvent("egress_denied", 2_000 + i, { host: "b", detail: "y" }));
    }
    await Promise.all([ra.close(), rb.close()]);
    expect(ra.stats.stored + rb.stats.stored).toBe(80);
    const all = await a.list({ limit: 1_000 });
    expect(all.length).toBe(50);
    expect((await db.sql<{ n: string }>("SELECT COUNT(*) AS n FROM security_events"))[0]?.n).toBe("50");
    const ids = all.map((e) => e.id);
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
    const denied = await b.list({ code: "egress_denied", sinceMs: 2_030 });
    expect(denied.map((e) => e.atMs)).toEqual([
      2_030, 2_031, 2_032, 2_033, 2_034, 2_035, 2_036, 2_037, 2_038, 2_039,
    ]);
    const counts = await a.countsByCode(0);
    expect((counts.proxy_auth_required ?? 0) + (counts.egress_denied ?? 0)).toBe(50);
  }, 30_000);
});
