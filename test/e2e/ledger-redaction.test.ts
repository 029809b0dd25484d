import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCsvLine, rowHash } from "../../src/ledger/entry.js";
import type { LedgerFields } from "../../src/ledger/entry.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { databasePath } from "../../src/payment/stores.js";
import { curl } from "../support/clients.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * An app that puts its own key in the query (`?api_key=…`): the ledger keeps the path and the
 * query with that value redacted, exports it so, and its hash chain still verifies, also over
 * a row written before redaction existed (which stays as it was in the database).
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const BASE = "http://test.api.stoka.space";
const run = promisify(execFile);

let w: ProxyWorld;
const apiKey = `k${randomBytes(8).toString("hex")}`; // short and plain: caught by its name
const accessToken = randomBytes(24).toString("base64url"); // caught by its shape

beforeAll(async () => {
  w = await startProxyWorld();
}, 30_000);
afterAll(async () => {
  await w.close();
});

const cli = (...args: string[]) =>
  run(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], {
    cwd: ROOT,
    timeout: 30_000,
    env: { PATH: process.env.PATH ?? "", STOKA_PROXY_DATA_DIR: w.config.dataDir },
  });

describe("secrets in the app's URL stay out of the ledger", () => {
  it("stores, exports and logs ?api_key=REDACTED&days=7, and the chain verifies", async () => {
    const res = await curl({
      proxy: w.proxyUrl,
      method: "POST",
      url: `${BASE}/v1/store?api_key=${apiKey}&days=7&v=${accessToken}`,
      headers: { "X-Stoka-Key": "with-query" },
      body: Buffer.from("q".repeat(42)),
    });
    expect(res.status).toBe(201);
    expect(res.headers["x-stoka-proxy-paid"]).toBe("1400");

    const stored = [...w.proxy.stores.ledger.rows()].map((r) => r.url);
    expect(stored.length).toBeGreaterThanOrEqual(2); // reserved, sent, settled
    for (const url of stored) expect(url).toMatch(/\/v1\/store\?api_key=REDACTED&days=7&v=REDACTED$/);

    const nd = (await cli("ledger", "export", "--format", "ndjson")).stdout;
    const csv = (await cli("ledger", "export", "--format", "csv")).stdout;
    for (const text of [nd, csv, w.logs()]) {
      expect(text).not.toContain(apiKey);
      expect(text).not.toContain(accessToken);
    }
    const rows = nd
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { url: string });
    expect(rows.every((r) => r.url.endsWith("/v1/store?api_key=REDACTED&days=7&v=REDACTED"))).toBe(true);
    const header = parseCsvLine(csv.split("\n")[0] ?? "");
    const urlColumn = header.indexOf("url");
    expect(parseCsvLine(csv.split("\n")[1] ?? "")[urlColumn]).toMatch(/\?api_key=REDACTED&days=7/);

    expect((await cli("ledger", "verify")).stdout).toMatch(/ledger OK/);
  }, 60_000);

  it("a row written before redaction is not rewritten (the chain verifies) and is exported redacted", async () => {
    const db = openDatabase(databasePath(w.config));
    try {
      const head = db.prepare("SELECT seq, hash FROM ledger_head WHERE id = 1").get() as {
        seq: number;
        hash: string;
      };
      const oldKey = `legacy${randomBytes(6).toString("hex")}`;
      const fields: LedgerFields = {
        paymentId: "legacy-payment",
        requestId: "legacy-request",
        atMs: Date.now(),
        client: "default",
        route: "store",
        method: "POST",
        url: `${w.sandbox.emulator.httpUrl}/v1/store?token=${oldKey}`,
        amount: 1400n,
        payTo: w.sandbox.payTo,
        asset: w.config.asset,
        network: w.config.network,
        state: "failed",
        tx: null,
        upstreamStatus: null,
        reason: "written by an older version",
      };
      const seq = head.seq + 1;
      const hash = rowHash(head.hash, seq, fields);
      db.prepare(
        `INSERT INTO ledger (seq, payment_id, request_id, at_ms, client, route, method, url, amount, pay_to, asset, network, state, tx, upstream_status, reason, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        seq,
        fields.paymentId,
        fields.requestId,
        fields.atMs,
        fields.client,
        fields.route,
        fields.method,
        fields.url,
        fields.amount,
        fields.payTo,
        fields.asset,
        fields.network,
        fields.state,
        fields.tx,
        fields.upstreamStatus,
        fields.reason,
        head.hash,
        hash,
      );
      db.prepare("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1").run(seq, hash);

      expect((await cli("ledger", "verify")).stdout).toMatch(/ledger OK/);
      const stored = db.prepare("SELECT url FROM ledger WHERE seq = ?").get(seq) as { url: string };
      expect(stored.url).toContain(oldKey); // the old row is left as it was
      const nd = (await cli("ledger", "export", "--format", "ndjson")).stdout;
      expect(nd).not.toContain(oldKey);
      expect(nd).toContain("/v1/store?token=REDACTED");
    } finally {
      db.close();
    }
  }, 60_000);
});
