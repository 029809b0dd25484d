import type { ServerResponse } from "node:http";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InFlightRequests } from "../../src/proxy/drain.js";
import type { InFlight } from "../../src/proxy/drain.js";
import type { RequestRecord } from "../../src/observability/request-record.js";

const record = (i: number): RequestRecord => ({
  requestId: `r${i}`,
  mode: "forward",
  method: "GET",
  host: "h",
  route: "other",
  client: "c",
});
const response = (i: number) => ({ id: i }) as unknown as ServerResponse;

describe("the requests in flight, for the drain", () => {
  it("holds exactly the requests added and not finished, in any order of finishing", () => {
    fc.assert(
      fc.property(
        fc.array(fc.boolean(), { maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 200 }),
        (adds, picks) => {
          const inFlight = new InFlightRequests();
          const open = new Map<number, InFlight>();
          let n = 0;
          for (const [i, add] of adds.entries()) {
            if (add || open.size === 0) {
              open.set(n, inFlight.add(response(n), record(n)));
              n++;
            } else {
              const keys = [...open.keys()];
              const k = keys[(picks[i] ?? 0) % keys.length] as number;
              const entry = open.get(k) as InFlight;
              inFlight.finished(entry);
              inFlight.finished(entry); // a second close changes nothing
              open.delete(k);
            }
            expect(inFlight.size).toBe(open.size);
            const ids = inFlight.entries().map(([, r]) => r.requestId);
            expect(new Set(ids)).toEqual(new Set([...open.keys()].map((k) => `r${k}`)));
          }
        },
      ),
    );
  });

  it("wakes the drain when the last request finishes, not before", async () => {
    const inFlight = new InFlightRequests();
    const a = inFlight.add(response(1), record(1));
    const b = inFlight.add(response(2), record(2));
    let empty = false;
    const waited = inFlight.whenEmpty().then(() => (empty = true));
    inFlight.finished(a);
    await Promise.resolve();
    expect(empty).toBe(false);
    inFlight.finished(b);
    await waited;
    expect(empty).toBe(true);
    await expect(inFlight.whenEmpty()).resolves.toBeUndefined();
  });
});
