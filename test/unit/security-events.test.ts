import { describe, expect, it } from "vitest";
import { securityEvent } from "../../src/operator/security/codes.js";
import type { SecurityEvent } from "../../src/operator/security/codes.js";
import type { EventStore } from "../../src/operator/security/event-store.js";
import { SecurityEventRecorder } from "../../src/operator/security/recorder.js";
import { SqliteEventStore } from "../../src/operator/security/sqlite-event-store.js";
import { openDatabase } from "../../src/storage/sqlite.js";

/** The security event store's row cap and the recorder's bounds (rate per code, buffer, failures). */
const ev = (code: SecurityEvent["code"], atMs: number, detail = "d") =>
  securityEvent(code, atMs, { client: "app", host: "h", route: "r", detail });

describe("securityEvent", () => {
  it("removes control characters and bounds every field", () => {
    const e = securityEvent("egress_denied", 1, {
      host: "a\r\nb\u0000c",
      detail: "x".repeat(1_000),
      client: "y".repeat(400),
    });
    expect(e.host).toBe("a  b c");
    expect(e.detail.length).toBe(300);
    expect(e.detail.endsWith("…")).toBe(true);
    expect(e.client.length).toBe(255);
    expect(e.route).toBe("");
  });
});

describe("SqliteEventStore", () => {
  it("keeps only the newest maxRows rows, whatever the flood", async () => {
    const db = openDatabase(":memory:");
    try {
      const store = new SqliteEventStore(db, 100);
      for (let i = 0; i < 10; i++)
        await store.append(Array.from({ length: 50 }, (_, j) => ev("proxy_auth_required", i * 50 + j)));
      const rows = await store.list({ limit: 1_000 });
      expect(rows.length).toBe(100);
      expect(rows[0]?.atMs).toBe(400);
      expect(rows.at(-1)?.atMs).toBe(499);
      expect((db.prepare("SELECT COUNT(*) AS n FROM security_events").get() as { n: number }).n).toBe(100);
    } finally {
      db.close();
    }
  });

  it("filters by code and time, limits to the newest, answers in write order; migration is idempotent", async () => {
    const db = openDatabase(":memory:");
    try {
      const store = new SqliteEventStore(db);
      new SqliteEventStore(db); // a second open runs the migration again
      await store.append([ev("terms_rejected", 10), ev("egress_denied", 20), ev("terms_rejected", 30)]);
      expect((await store.list({ code: "terms_rejected" })).map((e) => e.atMs)).toEqual([10, 30]);
      expect((await store.list({ sinceMs: 20 })).map((e) => e.atMs)).toEqual([20, 30]);
      expect((await store.list({ limit: 1 })).map((e) => e.atMs)).toEqual([30]);
      expect(await store.countsByCode(0)).toEqual({ terms_rejected: 2, egress_denied: 1 });
      // A code this version does not know (a newer one wrote it) is skipped, not an error.
      db.prepare(
        "INSERT INTO security_events (at_ms, code, client, host, route, detail) VALUES (40, 'future', '', '', '', '')",
      ).run();
      expect((await store.list()).length).toBe(3);
    } finally {
      db.close();
    }
  });
});

class MemoryStore implements EventStore {
  batches: SecurityEvent[][] = [];
  fail = false;
  append(batch: readonly SecurityEvent[]): Promise<number> {
    if (this.fail) return Promise.reject(new Error("disk full"));
    this.batches.push([...batch]);
    return Promise.resolve(0);
  }
  list() {
    return Promise.resolve([]);
  }
  countsByCode() {
    return Promise.resolve({});
  }
}

describe("SecurityEventRecorder", () => {
  it("stores at most perCodePerSecond events per code each second and counts the rest", async () => {
    let now = 1_000_000;
    const store = new MemoryStore();
    const dropped: string[] = [];
    const r = new SecurityEventRecorder(store, {
      perCodePerSecond: 3,
      now: () => now,
      observer: { dropped: (code, reason) => dropped.push(`${code}:${reason}`) },
    });
    for (let i = 0; i < 10; i++) r.record(ev("proxy_auth_required", now));
    r.record(ev("egress_denied", now)); // another code has its own allowance
    now += 1_000;
    r.record(ev("proxy_auth_required", now)); // a new second
    await r.flush();
    const stored = store.batches.flat();
    expect(stored.filter((e) => e.code === "proxy_auth_required").length).toBe(4);
    expect(stored.filter((e) => e.code === "egress_denied").length).toBe(1);
    expect(r.stats).toEqual({
      seen: 12,
      stored: 5,
      dropped: { rate_limited: 7, buffer_full: 0, store_failed: 0, closed: 0 },
    });
    expect(dropped.length).toBe(7);
    await r.close();
  });

  it("a full buffer drops (counted); a failing store drops the batch (counted) and is reported", async () => {
    const store = new MemoryStore();
    let failures = 0;
    const r = new SecurityEventRecorder(store, {
      perCodePerSecond: 1_000,
      bufferSize: 5,
      flushMs: 60_000,
      observer: { storeFailed: () => (failures += 1) },
    });
    for (let i = 0; i < 8; i++) r.record(ev("terms_rejected", i));
    expect(r.stats.dropped.buffer_full).toBe(3);
    store.fail = true;
    await r.flush();
    expect(r.stats.dropped.store_failed).toBe(5);
    expect(failures).toBe(1);
    store.fail = false;
    r.record(ev("terms_rejected", 9));
    await r.close();
    r.record(ev("terms_rejected", 10)); // after close: counted, not stored
    expect(store.batches.flat().map((e) => e.atMs)).toEqual([9]);
    expect(r.stats.dropped.closed).toBe(1);
  });

  it("writes in batches, on its timer, off the caller's stack", async () => {
    const store = new MemoryStore();
    const r = new SecurityEventRecorder(store, { flushMs: 20, batchSize: 4, perCodePerSecond: 100 });
    for (let i = 0; i < 10; i++) r.record(ev("client_auth_required", i));
    expect(store.batches).toEqual([]); // nothing written synchronously
    for (let i = 0; i < 100 && store.batches.flat().length < 10; i++)
      await new Promise((res) => setTimeout(res, 20));
    expect(store.batches.map((b) => b.length)).toEqual([4, 4, 2]);
    await r.close();
  });
});
