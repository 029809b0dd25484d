import { afterEach, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import { cli, eventually, startGateway } from "../support/postgres-replicas.js";
import type { Gateway } from "../support/postgres-replicas.js";
import { tcpRelay } from "../support/tcp-relay.js";
import type { TcpRelay } from "../support/tcp-relay.js";

/**
 * A running proxy process on `payment_store.kind: postgres` keeps its security events in that
 * database (the `security_events` table replicas share), not in its data directory. It starts
 * while the database is away (a relay in front of it is closed): the event of that time is
 * lost (counted, not stored), and once the database answers the next events are written, so
 * the failed first connect was tried again rather than kept as the answer.
 */
let g: Gateway | undefined;
let relay: TcpRelay | undefined;
afterEach(async () => {
  await g?.close();
  g = undefined;
  await relay?.close();
  relay = undefined;
});

const denied = (proxy: string, host: string) => curl({ proxy, method: "GET", url: `http://${host}/` });

describe("security events with PostgreSQL in the running proxy", () => {
  it("are written to the shared database, also after a failed first connect", async () => {
    relay = await tcpRelay(5432);
    const r = relay;
    await relay.stop();
    g = await startGateway(10n, 1, {
      urlFor: (db) => db.urlVia(r.port, "pg-relay-password-not-for-logs"),
      extra: { egress: { deny_hosts: ["blocked-while-down.example", "blocked-after.example"] } },
    });
    const p = g.procs[0];
    if (!p) throw new Error("no replica");
    const db = g.db;

    // The database is away: the event is counted, its batch cannot be stored.
    expect((await denied(p.url, "blocked-while-down.example")).status).toBe(403);
    const metric = async (re: RegExp) =>
      Number(re.exec(await (await fetch(`${p.adminUrl}/metrics`)).text())?.[1] ?? NaN);
    expect(
      await eventually(
        async () =>
          (await metric(/^stoka_proxy_security_events_dropped_total\{reason="store_failed"\} (\d+)$/m)) >= 1,
        15_000,
      ),
    ).toBe(true);

    await relay.start();
    expect((await denied(p.url, "blocked-after.example")).status).toBe(403);
    const rows = async () => {
      try {
        return await db.sql<{ code: string; host: string }>(
          "SELECT code, host FROM security_events ORDER BY id",
        );
      } catch {
        return []; // the table is made by the proxy's first successful write
      }
    };
    expect(await eventually(async () => (await rows()).length >= 1, 20_000)).toBe(true);
    expect(await rows()).toEqual([{ code: "egress_denied", host: "blocked-after.example" }]);

    // `stoka-proxy events` reads the same table.
    const listed = await cli(g.sb, g.configs[0] as string, "events", "--json");
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain("blocked-after.example");
    // The password in the database URL never reached the log.
    expect(p.output()).not.toContain("pg-relay-password-not-for-logs");
  }, 120_000);
});
