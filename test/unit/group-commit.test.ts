import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { GroupCommit } from "../../src/storage/group-commit.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { SqlitePaymentStore } from "../../src/store/sqlite-payment-store.js";
import type { PaymentFacts } from "../../src/store/payment-store.js";

/**
 * Group commit (src/storage/group-commit.ts) on a real SQLite file, read back through a second
 * connection as another process would: writes asked for in one turn commit together, a caller
 * is answered only after its write is visible to others, a failing write is undone alone, a
 * failed COMMIT answers every caller with its error, and concurrent reservations still never
 * overspend with the chain intact.
 */
let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "stoka-group-commit-"));
  path = join(dir, "stoka-proxy.db");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const count = (other: Database.Database) =>
  (other.prepare("SELECT COUNT(*) AS n FROM t").get() as { n: number }).n;

describe("GroupCommit", () => {
  it("commits one turn's writes together and answers each caller after the commit", async () => {
    const db = openDatabase(path);
    db.exec("CREATE TABLE t (v INTEGER)");
    const other = new Database(path);
    try {
      const gc = new GroupCommit(db);
      const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
      const seen: number[] = [];
      const writes = Array.from({ length: 20 }, (_, i) =>
        gc.run(() => insert.run(i).changes).then(() => seen.push(count(other))),
      );
      // Asked for, not committed yet: another connection sees nothing.
      expect(count(other)).toBe(0);
      await Promise.all(writes);
      // Every caller was answered after all 20 rows were committed (one transaction).
      expect(seen).toEqual(Array.from({ length: 20 }, () => 20));
    } finally {
      other.close();
      db.close();
    }
  });

  it("undoes a failing write alone; the others of the batch commit", async () => {
    const db = openDatabase(path);
    db.exec("CREATE TABLE t (v INTEGER)");
    const other = new Database(path);
    try {
      const gc = new GroupCommit(db);
      const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
      const results = await Promise.allSettled([
        gc.run(() => insert.run(1)),
        gc.run(() => {
          insert.run(2);
          throw new Error("this write fails after writing");
        }),
        gc.run(() => insert.run(3)),
      ]);
      expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
      expect(other.prepare("SELECT v FROM t ORDER BY v").all()).toEqual([{ v: 1 }, { v: 3 }]);
    } finally {
      other.close();
      db.close();
    }
  });

  it("a write whose error ended the whole transaction: no later write of the batch commits behind it", async () => {
    // SQLite itself rolls the whole transaction back on some errors (RAISE(ROLLBACK) here; disk
    // full, I/O errors and out-of-memory may too): the batch is gone, and every write asked
    // for in it, before or after, must be answered with an error and leave nothing behind.
    const db = openDatabase(path);
    db.exec(`CREATE TABLE t (v INTEGER);
      CREATE TRIGGER boom BEFORE INSERT ON t WHEN NEW.v = 2 BEGIN SELECT RAISE(ROLLBACK, 'rolled back'); END;`);
    const other = new Database(path);
    try {
      const gc = new GroupCommit(db);
      const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
      const results = await Promise.allSettled([1, 2, 3].map((v) => gc.run(() => insert.run(v).changes)));
      const committed = (other.prepare("SELECT v FROM t ORDER BY v").all() as { v: number }[]).map(
        (r) => r.v,
      );
      // Whatever a caller was told must match the file: resolved ⇔ its row is there.
      const resolved = [1, 2, 3].filter((_, i) => results[i]?.status === "fulfilled");
      expect(committed).toEqual(resolved);
      expect(committed).toEqual([]);
      expect(db.inTransaction).toBe(false);
    } finally {
      other.close();
      db.close();
    }
  });

  it("answers every caller with the error when the batch cannot commit, and writes nothing", async () => {
    const db = openDatabase(path);
    db.exec("CREATE TABLE t (v INTEGER)");
    db.pragma("busy_timeout = 50");
    const other = new Database(path);
    try {
      const gc = new GroupCommit(db);
      const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
      other.exec("BEGIN IMMEDIATE"); // another writer holds the file's write lock
      const results = await Promise.allSettled([gc.run(() => insert.run(1)), gc.run(() => insert.run(2))]);
      other.exec("ROLLBACK");
      expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
      expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/busy|locked/i);
      expect(count(other)).toBe(0);
    } finally {
      other.close();
      db.close();
    }
  });
});

describe("SqlitePaymentStore with group commit", () => {
  const facts = (i: number): PaymentFacts => ({
    paymentId: `p-${i}`,
    requestId: `r-${i}`,
    client: "127.0.0.1",
    route: "store",
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    amount: 1400n,
    payTo: "GPAYEE",
    asset: "CASSET",
    network: "stellar:testnet",
  });
  const budget: Budget = {
    name: "day",
    match: {},
    limits: [{ period: { kind: "calendar", unit: "day" }, amount: 5n * 1400n }],
  };

  it("30 concurrent reservations in one batch: exactly 5 fit, rows chained, durable when answered", async () => {
    const store = SqlitePaymentStore.open(path);
    try {
      const nowMs = Date.now();
      const opened = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          store.open({ payment: facts(i), budgets: [budget], nowMs, leaseUntilMs: nowMs + 60_000 }),
        ),
      );
      expect(opened.filter((r) => r.ok)).toHaveLength(5);
      // The first five asked for are the ones that fit: order is kept.
      expect(opened.slice(0, 5).every((r) => r.ok)).toBe(true);
      // Later states of the five, asked for all at once (sent, then settled), in one more batch each.
      await Promise.all(
        [0, 1, 2, 3, 4].map((i) =>
          store.record({
            paymentId: `p-${i}`,
            state: "sent",
            atMs: nowMs,
            tx: null,
            upstreamStatus: null,
            reason: null,
          }),
        ),
      );
      const other = new Database(path, { readonly: true });
      try {
        const rows = other
          .prepare("SELECT state, COUNT(*) AS n FROM ledger GROUP BY state ORDER BY state")
          .all();
        expect(rows).toEqual([
          { state: "reserved", n: 5 },
          { state: "sent", n: 5 },
        ]);
      } finally {
        other.close();
      }
      expect(await store.verify()).toMatchObject({ ok: true });
      expect(await store.used(budget, budget.limits[0] as Budget["limits"][0], nowMs)).toBe(5n * 1400n);
    } finally {
      await store.close();
    }
  });
});
