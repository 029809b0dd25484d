import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keypair } from "@stellar/stellar-sdk";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ledgerExport, reconcileCommand } from "../../src/cli/ledger-commands.js";
import type { ProxyConfig } from "../../src/config/config.js";
import { GENESIS_HASH } from "../../src/ledger/entry.js";
import type { LedgerFields, LedgerRow } from "../../src/ledger/entry.js";
import { createLogger } from "../../src/observability/logger.js";
import type { PaymentFacts, PaymentStore } from "../../src/store/payment-store.js";
import { MIGRATIONS } from "../../src/store/postgres-migrations.js";
import { PostgresPaymentStore } from "../../src/store/postgres-payment-store.js";
import { SqlitePaymentStore } from "../../src/store/sqlite-payment-store.js";
import { curl } from "../support/clients.js";
import { STORE_KINDS, makePlace } from "../support/payment-stores.js";
import type { StoreKind, StorePlace } from "../support/payment-stores.js";
import { createTestDatabase } from "../support/postgres.js";
import type { TestDatabase } from "../support/postgres.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * The paying wallet in the ledger (docs/operations.md, The ledger; Reconcile): every row of a
 * payment records its payer, in SQLite and PostgreSQL alike; ledgers written before the field
 * existed (old schema, old hashes) migrate in place, keep payer NULL and still verify; the
 * proxy fills it from the signer; reconcile compares only the reconciled wallet's payments.
 */
const ALICE = Keypair.random().publicKey();
const BOB = Keypair.random().publicKey();
const T0 = Date.UTC(2025, 11, 1, 10, 0);
const MINUTE = 60_000;

function facts(paymentId: string, payer?: string | null): PaymentFacts {
  return {
    paymentId,
    requestId: `req-${paymentId}`,
    client: "app",
    route: "store",
    method: "POST",
    url: "http://test.api.stoka.space/v1/store",
    amount: 1400n,
    payTo: "GPAYEE",
    asset: "CUSDC",
    network: "stellar:testnet",
    ...(payer === undefined ? {} : { payer }),
  };
}

async function allRows(store: PaymentStore): Promise<LedgerRow[]> {
  const out: LedgerRow[] = [];
  for await (const r of store.rows()) out.push(r);
  return out;
}

async function openOne(store: PaymentStore, id: string, payer: string | null | undefined, atMs: number) {
  const r = await store.open({
    payment: facts(id, payer),
    budgets: [],
    nowMs: atMs,
    leaseUntilMs: atMs + MINUTE,
  });
  if (!r.ok) throw new Error(`${id} was refused`);
  return r.row;
}

/** The canonical text of a row as stoka-proxy wrote it before the payer existed (16 fields). */
function oldTail(f: LedgerFields): string {
  return JSON.stringify([
    0,
    f.paymentId,
    f.requestId,
    f.atMs,
    f.client,
    f.route,
    f.method,
    f.url,
    f.amount.toString(),
    f.payTo,
    f.asset,
    f.network,
    f.state,
    f.tx,
    f.upstreamStatus,
    f.reason,
  ]).slice(3);
}

function oldHash(prev: string, seq: number, f: LedgerFields): string {
  return createHash("sha256")
    .update(`${prev}\n[${seq},${oldTail(f)}`)
    .digest("hex");
}

describe.each(STORE_KINDS)("the payer in every row (%s)", (kind: StoreKind) => {
  let place: StorePlace;
  let store: PaymentStore;
  beforeEach(async () => {
    place = await makePlace(kind);
    store = await place.open();
  });
  afterEach(async () => {
    await store.close();
    await place.drop();
  });

  it("each state of a payment carries its payer; one without a payer is null throughout; the chain verifies", async () => {
    await openOne(store, "a", ALICE, T0);
    await store.record({
      paymentId: "a",
      state: "sent",
      atMs: T0 + 1,
      tx: "t".repeat(64),
      upstreamStatus: null,
      reason: null,
    });
    await store.record({
      paymentId: "a",
      state: "indeterminate",
      atMs: T0 + 2,
      tx: null,
      upstreamStatus: 502,
      reason: "dropped",
    });
    await store.resolveIndeterminate({ paymentId: "a", charged: true, atMs: T0 + 3, reason: "reconciled" });
    await openOne(store, "b", BOB, T0 + 4);
    await store.expireLeases(T0 + 4 + 2 * MINUTE);
    await openOne(store, "c", undefined, T0 + 5);
    await store.recoverInterrupted(T0 + 6);

    const rows = await allRows(store);
    const payers = (id: string) => [...new Set(rows.filter((r) => r.paymentId === id).map((r) => r.payer))];
    expect(rows.filter((r) => r.paymentId === "a").map((r) => r.state)).toEqual([
      "reserved",
      "sent",
      "indeterminate",
      "settled",
    ]);
    expect(payers("a")).toEqual([ALICE]);
    expect(payers("b")).toEqual([BOB]);
    expect(payers("c")).toEqual([null]);
    expect((await store.latest()).map((p) => [p.paymentId, p.payer])).toEqual([
      ["a", ALICE],
      ["b", BOB],
      ["c", null],
    ]);
    expect(await store.verify()).toMatchObject({ ok: true, rows: rows.length });
  });

  it("a payer changed or removed in the database is found by verify", async () => {
    await openOne(store, "a", ALICE, T0);
    await openOne(store, "b", ALICE, T0 + 1);
    await place.allowLedgerEdits();
    await place.sql(`UPDATE ledger SET payer = ${kind === "sqlite" ? "?" : "$1"} WHERE seq = 1`, [BOB]);
    expect(await store.verify()).toMatchObject({ ok: false, seq: 1, reason: "row 1 was edited" });
    await place.sql(`UPDATE ledger SET payer = ${kind === "sqlite" ? "?" : "$1"} WHERE seq = 1`, [ALICE]);
    expect((await store.verify()).ok).toBe(true);
    await place.sql("UPDATE ledger SET payer = NULL WHERE seq = 2");
    expect(await store.verify()).toMatchObject({ ok: false, seq: 2, reason: "row 2 was edited" });
  });
});

describe("a SQLite ledger written before the payer column", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "stoka-payer-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("migrates in place: old rows keep payer NULL and verify, new rows record it, export shows both", async () => {
    const path = join(dir, "stoka-proxy.db");
    // The ledger table and hashes exactly as earlier versions made them.
    const db = new Database(path);
    db.exec(`
      CREATE TABLE ledger (seq INTEGER PRIMARY KEY, payment_id TEXT NOT NULL, request_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
        client TEXT NOT NULL, route TEXT NOT NULL, method TEXT NOT NULL, url TEXT NOT NULL, amount INTEGER NOT NULL,
        pay_to TEXT NOT NULL, asset TEXT NOT NULL, network TEXT NOT NULL, state TEXT NOT NULL, tx TEXT,
        upstream_status INTEGER, reason TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
      CREATE TABLE ledger_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
    `);
    let prev = GENESIS_HASH;
    const old: LedgerFields[] = [
      { ...facts("old"), atMs: T0, state: "reserved", tx: null, upstreamStatus: null, reason: null },
      {
        ...facts("old"),
        atMs: T0 + 1,
        state: "settled",
        tx: "e".repeat(64),
        upstreamStatus: 201,
        reason: null,
      },
    ];
    old.forEach((f, i) => {
      const hash = oldHash(prev, i + 1, f);
      db.prepare("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").run(
        i + 1,
        f.paymentId,
        f.requestId,
        f.atMs,
        f.client,
        f.route,
        f.method,
        f.url,
        f.amount,
        f.payTo,
        f.asset,
        f.network,
        f.state,
        f.tx,
        f.upstreamStatus,
        f.reason,
        prev,
        hash,
      );
      db.prepare("INSERT OR REPLACE INTO ledger_head VALUES (1, ?, ?)").run(i + 1, hash);
      prev = hash;
    });
    db.close();

    const store = SqlitePaymentStore.open(path);
    try {
      expect(await store.verify()).toMatchObject({ ok: true, rows: 2 });
      await openOne(store, "new", ALICE, T0 + 2);
      await store.record({
        paymentId: "new",
        state: "settled",
        atMs: T0 + 3,
        tx: null,
        upstreamStatus: 201,
        reason: null,
      });
      expect(await store.verify()).toMatchObject({ ok: true, rows: 4 });
      const rows = await allRows(store);
      expect(rows.map((r) => [r.paymentId, r.payer])).toEqual([
        ["old", null],
        ["old", null],
        ["new", ALICE],
        ["new", ALICE],
      ]);
      // The old rows' hashes are the ones written before: nothing was rewritten.
      expect(rows[1]?.hash).toBe(prev);
    } finally {
      await store.close();
    }
    // Opening again does not migrate twice.
    const again = SqlitePaymentStore.open(path);
    expect(await again.verify()).toMatchObject({ ok: true, rows: 4 });
    await again.close();

    const config = {
      dataDir: dir,
      paymentStore: { kind: "sqlite" },
      budgetStore: { kind: "sqlite" },
    } as unknown as ProxyConfig;
    let json = "";
    await ledgerExport(config, "ndjson", undefined, (t) => (json += t));
    expect(
      json
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { payer: string | null }).payer),
    ).toEqual([null, null, ALICE, ALICE]);
    let csv = "";
    await ledgerExport(config, "csv", undefined, (t) => (csv += t));
    const [header, first, , third] = csv.trim().split("\n");
    const col = (header ?? "").split(",").indexOf("payer");
    expect(col).toBeGreaterThan(0);
    expect((first ?? "").split(",")[col]).toBe("");
    expect((third ?? "").split(",")[col]).toBe(ALICE);
  });
});

describe("a PostgreSQL ledger at schema 1", () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await db.drop();
  });

  /** What a replica of an earlier version sends: the 20- and 19-argument functions, old tails. */
  async function oldReplicaPays(id: string, atMs: number): Promise<void> {
    const f: LedgerFields = {
      ...facts(id),
      atMs,
      state: "reserved",
      tx: null,
      upstreamStatus: null,
      reason: null,
    };
    const facts11 = (x: LedgerFields) => [
      x.paymentId,
      x.requestId,
      x.atMs,
      x.client,
      x.route,
      x.method,
      x.url,
      x.amount.toString(),
      x.payTo,
      x.asset,
      x.network,
    ];
    await db.sql(
      `SELECT * FROM stoka_open(${Array.from({ length: 20 }, (_, i) => `$${i + 1}`).join(", ")})`,
      [...facts11(f), oldTail(f), [], 424242, atMs + MINUTE, [], [], [], [], []],
    );
    const settled: LedgerFields = { ...f, atMs: atMs + 1, state: "settled", upstreamStatus: 201 };
    await db.sql(
      `SELECT * FROM stoka_append(${Array.from({ length: 19 }, (_, i) => `$${i + 1}`).join(", ")})`,
      [...facts11(settled), "settled", null, 201, null, oldTail(settled), ["reserved"], ["spent"], [false]],
    );
  }

  it("migrates to the payer schema; old rows verify with payer NULL; an old replica can still write", async () => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query("BEGIN");
      await c.query(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
      );
      await c.query((MIGRATIONS[0] as { sql: string }).sql);
      await c.query("INSERT INTO schema_migrations (version, name) VALUES (1, 'v1')");
      await c.query("COMMIT");
    } finally {
      await c.end();
    }
    await oldReplicaPays("old", T0);

    const store = await PostgresPaymentStore.connect({ url: db.url, poolMax: 2 });
    try {
      expect(await store.verify()).toMatchObject({ ok: true, rows: 2 });
      const versions = await db.sql<{ version: number }>(
        "SELECT version FROM schema_migrations ORDER BY version",
      );
      expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
      await openOne(store, "new", ALICE, T0 + 10);
      await store.record({
        paymentId: "new",
        state: "settled",
        atMs: T0 + 11,
        tx: null,
        upstreamStatus: 201,
        reason: null,
      });
      // A replica not upgraded yet (rolling upgrade) still appends, with payer NULL.
      await oldReplicaPays("old-after", T0 + 20);
      expect(await store.verify()).toMatchObject({ ok: true, rows: 6 });
      expect((await allRows(store)).map((r) => [r.paymentId, r.payer])).toEqual([
        ["old", null],
        ["old", null],
        ["new", ALICE],
        ["new", ALICE],
        ["old-after", null],
        ["old-after", null],
      ]);
    } finally {
      await store.close();
    }
  });
});

describe("the proxy records its wallet; reconcile compares only that wallet's payments", () => {
  let w: ProxyWorld;
  beforeAll(async () => {
    w = await startProxyWorld();
  }, 60_000);
  afterAll(async () => {
    await w.close();
  });

  it("a paid request's rows name the signing wallet; other wallets' and unknown payers' rows are told apart", async () => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: "http://test.api.stoka.space/v1/store",
      headers: { "X-Stoka-Key": "payer-1" },
      body: Buffer.from("p".repeat(42)),
    });
    expect(res.status).toBe(201);
    const wallet = w.sandbox.wallet.publicKey();
    const store = w.proxy.ctx.book.store;
    const rows = await allRows(store);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(new Set(rows.map((r) => r.payer))).toEqual(new Set([wallet]));

    const run = async (json: boolean, walletFlag?: string) => {
      let out = "";
      const code = await reconcileCommand(
        w.config,
        createLogger("silent"),
        2,
        false,
        json,
        (t) => (out += t),
        undefined,
        walletFlag,
      );
      return { code, out };
    };
    const today = (out: string) =>
      (JSON.parse(out) as Record<string, unknown>[]).find((d) => d.ledger_settled !== "0");

    // Another wallet's settled payment today (a shared ledger): not compared, the day matches.
    const now = Date.now();
    await openOne(store, "bob-1", BOB, now);
    await store.record({
      paymentId: "bob-1",
      state: "settled",
      atMs: now,
      tx: null,
      upstreamStatus: 201,
      reason: null,
    });
    let r = await run(true);
    expect(r.code).toBe(0);
    expect(today(r.out)).toMatchObject({
      ledger_settled: "1400",
      upstream: "1400",
      status: "match",
      other_wallets: 1,
      unattributed: 0,
    });

    // A row of unknown payer is counted as this wallet's, with a note: here stoka did not charge it.
    await openOne(store, "unknown-1", null, now);
    await store.record({
      paymentId: "unknown-1",
      state: "settled",
      atMs: now,
      tx: null,
      upstreamStatus: 201,
      reason: null,
    });
    r = await run(true);
    expect(r.code).toBe(4);
    expect(today(r.out)).toMatchObject({
      ledger_settled: "2800",
      upstream: "1400",
      status: "mismatch",
      unattributed: 1,
    });
    r = await run(false, wallet);
    expect(r.out).toContain(`wallet: ${wallet}`);
    expect(r.out).toMatch(/note: 1 payment\(s\) were recorded before the ledger kept the paying wallet/);
    expect(r.out).toMatch(/note: 1 payment\(s\) of other wallets in these days were not compared/);

    // --wallet another than the key's: refused before anything is read.
    await expect(run(true, BOB)).rejects.toThrow(/is not the configured wallet/);
  }, 60_000);
});
