import { afterEach, describe, expect, it } from "vitest";
import { tcpRelay } from "../support/tcp-relay.js";
import type { TcpRelay } from "../support/tcp-relay.js";
import {
  PRICE,
  cli,
  eventually,
  hammer,
  paidCount,
  readyz,
  spendUsed,
  startGateway,
} from "../support/postgres-replicas.js";
import type { Gateway } from "../support/postgres-replicas.js";

/**
 * A gateway replica on PostgreSQL whose database goes away (a relay in front of it is closed)
 * and comes back: nothing is paid meanwhile, /readyz says so, and payments resume by themselves.
 * The emulator's charges are the truth.
 */
/** How many payments this replica signed (the signing histogram's count). */
async function signings(adminUrl: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  return Number(/^stoka_proxy_payment_signing_seconds_count (\d+)$/m.exec(text)?.[1] ?? NaN);
}

let g: Gateway | undefined;
let relay: TcpRelay | undefined;
afterEach(async () => {
  await g?.close();
  g = undefined;
  await relay?.close();
  relay = undefined;
});

describe("the database goes away", () => {
  it("refuses to pay (402 budget_unavailable, nothing signed), /readyz 503, and recovers by itself", async () => {
    const password = "pg-relay-password-not-for-logs";
    relay = await tcpRelay(5432);
    const r = relay;
    // The password is ignored by the test server (trust) but is part of the URL the proxy holds.
    g = await startGateway(100n, 1, { urlFor: (db) => db.urlVia(r.port, password) });
    const p = g.procs[0];
    if (!p) throw new Error("no replica");
    expect(paidCount(await hammer([p.url], 3, "before"))).toBe(3);
    expect(g.charged()).toBe(3n * PRICE);

    const signedBefore = await signings(p.adminUrl);
    expect(signedBefore).toBe(3);
    await relay.stop();
    const refused = await hammer([p.url], 4, "down");
    expect(refused.map((x) => [x.status, x.error])).toEqual(refused.map(() => [402, "budget_unavailable"]));
    for (const x of refused) expect(x.reason).toMatch(/payment database 127\.0\.0\.1:\d+\/stoka_test_\w+/);
    expect(g.charged()).toBe(3n * PRICE);
    // Refused before signing: no payment was even made.
    expect(await signings(p.adminUrl)).toBe(signedBefore);
    const down = await readyz(p.adminUrl);
    expect(down.status).toBe(503);
    expect(down.reasons.join(" ")).toMatch(/payment database/);
    const spendDown = await cli(g.sb, g.configs[0] as string, "spend", "--json");
    expect(spendDown.code).not.toBe(0);
    expect(spendDown.stderr).toMatch(/budget_unavailable|payment database/);

    await relay.start();
    const gw = g;
    expect(await eventually(async () => (await readyz(p.adminUrl)).status === 200, 30_000)).toBe(true);
    expect(paidCount(await hammer([p.url], 2, "after"))).toBe(2);
    expect(gw.charged()).toBe(5n * PRICE);
    expect(await spendUsed(g)).toBe(5n * PRICE);

    // The password never reached a log line, an answer or the CLI's errors.
    for (const text of [p.output(), JSON.stringify(refused), JSON.stringify(down), spendDown.stderr])
      expect(text).not.toContain(password);
  }, 90_000);
});
