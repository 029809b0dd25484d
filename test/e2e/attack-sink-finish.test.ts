import http from "node:http";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { UndiciAnswer, UpstreamClient } from "../../src/http/upstream-client.js";
import type { UpstreamAnswer } from "../../src/http/upstream-client.js";
import { pipeUpstream } from "../../src/proxy/respond.js";
import { startRawUpstream } from "../support/raw-upstream.js";
import { afterDelay } from "../support/sockets.js";
import type { LoopDelay } from "../support/sockets.js";
import type { RawUpstream } from "../support/raw-upstream.js";

/**
 * Attack review of 10436dd (UndiciAnswer.finish keeps its two-turn deferred end in `endLater`;
 * sinkTo cancels it when it ends the answer itself, _destroy cancels it too). Real sockets: a
 * raw upstream, UpstreamClient.send (undici), and the real pipeUpstream into a real app-facing
 * server, the sink called at each moment around the two deferred turns. Every UndiciAnswer is
 * watched: the sink must be ended exactly once, no deferred end may still run after the sink
 * ended it (the cancelled immediates), nothing stays scheduled, and a reader without a sink
 * (the 402 read) must still get its end late enough to find the pooled connection free.
 */
const TIMEOUT_MS = 800;

type Delay = Exclude<LoopDelay, "ms300">;
const wait = afterDelay;
const delays: Delay[] = ["now", "micro", "immediate1", "immediate2", "immediate3", "ms50"];
const turn = () => new Promise((r) => setImmediate(r));
/** Whether an answer's deferred end is still going to run (a cleared Immediate is `_destroyed`). */
const scheduled = (a: { endLater: unknown }): boolean =>
  a.endLater !== undefined && !(a.endLater as { _destroyed?: boolean })._destroyed;

// ---- watching every UndiciAnswer -------------------------------------------------------------
type Watched = UpstreamAnswer & { sunk: boolean; endLater: unknown; endPending: boolean };
const answersSeen: Watched[] = [];
/** push(null) on an answer whose sink was already ended: a deferred end that was not cancelled. */
let lateEnds = 0;
let endEvents = 0;
const proto = UndiciAnswer.prototype as unknown as {
  push: (this: Watched, c: Buffer | null) => boolean;
  finish: (this: Watched) => void;
};
const origPush = proto.push;
const origFinish = proto.finish;
beforeAll(() => {
  proto.push = function (this: Watched, c: Buffer | null) {
    if (c === null && this.sunk) lateEnds += 1;
    return origPush.call(this, c);
  };
  proto.finish = function (this: Watched) {
    if (!answersSeen.includes(this)) {
      answersSeen.push(this);
      this.once("end", () => (endEvents += 1));
    }
    return origFinish.call(this);
  };
});
afterAll(() => {
  proto.push = origPush;
  proto.finish = origFinish;
});
beforeEach(() => {
  answersSeen.length = 0;
  lateEnds = 0;
  endEvents = 0;
});

// ---- the upstream: each answer names its request, so a bleed or reorder shows ------------------
let up: RawUpstream;
let client: UpstreamClient;
let app: http.Server;
let appPort = 0;
/** Per upstream connection, the paths it carried, in order. */
const carried = new Map<net.Socket, string[]>();
const body = (path: string) => `body-of:${path}`;

const answerFor = (s: net.Socket, path: string): void => {
  const list = carried.get(s) ?? [];
  list.push(path);
  carried.set(s, list);
  if (path.startsWith("/no-content")) return void s.write("HTTP/1.1 204 No Content\r\n\r\n");
  if (path.startsWith("/not-modified")) return void s.write('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n');
  if (path.startsWith("/excess")) {
    // Five bytes more than it says, in the same write: the extra must never reach the app.
    const b = body(path);
    return void s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n${b}EVIL!`);
  }
  if (path.startsWith("/chunked")) {
    const b = body(path);
    return void s.write(
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`,
    );
  }
  if (path.startsWith("/split")) {
    const b = body(path);
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n${b.slice(0, 3)}`);
    return void setTimeout(() => s.write(b.slice(3)), 30);
  }
  const b = body(path);
  s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n${b}`);
};

beforeAll(async () => {
  up = await startRawUpstream((s, head) => {
    const path = head.split(" ")[1] ?? "";
    answerFor(s, path);
  });
  client = new UpstreamClient({ timeoutMs: TIMEOUT_MS, connectTimeoutMs: 1000, caPems: [] });
  app = http.createServer((req, res) => {
    const delay = (req.headers["x-delay"] as Delay | undefined) ?? "now";
    client
      .send({
        url: new URL(`http://127.0.0.1:${up.port}${req.url}`),
        method: req.method ?? "GET",
        headers: {},
      })
      .then(async (answer: UpstreamAnswer) => {
        await wait(delay);
        let ends = 0;
        const end = res.end.bind(res) as (...a: unknown[]) => http.ServerResponse;
        (res as unknown as { end: (...a: unknown[]) => unknown }).end = (...a: unknown[]) => {
          ends += 1;
          return end(...a);
        };
        res.once("finish", () => {
          (app as unknown as { sinkEnds: number[] }).sinkEnds.push(ends);
        });
        pipeUpstream(answer, res, {});
      })
      .catch(() => res.destroy());
  });
  (app as unknown as { sinkEnds: number[] }).sinkEnds = [];
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", () => r()));
  appPort = (app.address() as AddressInfo).port;
});
afterAll(async () => {
  client?.close();
  app?.closeAllConnections();
  await new Promise<void>((r) => app.close(() => r()));
  await up?.close();
});
afterEach(() => {
  carried.clear();
  (app as unknown as { sinkEnds: number[] }).sinkEnds = [];
});
const sinkEnds = () => (app as unknown as { sinkEnds: number[] }).sinkEnds;

function get(
  a: http.Agent,
  path: string,
  delay: Delay,
  method = "GET",
): Promise<{ status: number; body: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: appPort, path, method, agent: a, headers: { "x-delay": delay } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            complete: res.complete,
          }),
        );
        res.on("error", reject);
        res.on("aborted", () => reject(new Error("aborted")));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error("client timeout (hung answer)")));
    req.on("error", reject);
    req.end();
  });
}

/** After the answers: nothing an answer scheduled is still pending, and no deferred end ran late. */
async function expectNothingLeft(): Promise<void> {
  await turn();
  await turn();
  await turn();
  for (const a of answersSeen) {
    expect(scheduled(a)).toBe(false);
    expect(a.endPending).toBe(false);
  }
  expect(lateEnds).toBe(0);
  // A sink that came after the deferred end had run (immediate2 and later) drains an ended
  // Readable: its 'end' then fires (harmless, as before 10436dd). Never more than once each.
  expect(endEvents).toBeLessThanOrEqual(answersSeen.length);
}

describe("the sink taking an answer finished before it, at every moment around the two deferred turns", () => {
  for (const d of delays) {
    it(`small answers in one write, sink after ${d}: 12 in a row on one app connection, each its own body, ended once, nothing left scheduled`, async () => {
      const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = 0; i < 12; i++) {
          const path = `/s-${d}-${i}`;
          const r = await get(a, path, d);
          expect(r.status).toBe(200);
          expect(r.complete).toBe(true);
          expect(r.body).toBe(body(path));
        }
      } finally {
        a.destroy();
      }
      expect(answersSeen.length).toBe(12);
      expect(sinkEnds()).toEqual(Array(12).fill(1));
      await expectNothingLeft();
      // No upstream connection carried a request it was not answering: each path once, in order.
      const all = [...carried.values()].flat();
      expect(new Set(all).size).toBe(12);
    });

    it(`a chunked answer and a split answer, sink after ${d}: whole, ended, nothing late`, async () => {
      const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (const p of [`/chunked-${d}`, `/split-${d}`, `/chunked-${d}-2`]) {
          const r = await get(a, p, d);
          expect(r.body).toBe(body(p));
        }
      } finally {
        a.destroy();
      }
      await expectNothingLeft();
    });

    it(`204, 304 and HEAD (finish() at the head), sink after ${d}: answered, ended once, next request served`, async () => {
      const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        expect((await get(a, `/no-content-${d}`, d)).status).toBe(204);
        expect((await get(a, `/not-modified-${d}`, d)).status).toBe(304);
        const h = await get(a, `/head-${d}`, d, "HEAD");
        expect(h.status).toBe(200);
        expect(h.body).toBe("");
        const n = await get(a, `/next-${d}`, d);
        expect(n.body).toBe(body(`/next-${d}`));
      } finally {
        a.destroy();
      }
      expect(sinkEnds()).toEqual([1, 1, 1, 1]);
      await expectNothingLeft();
    });

    it(`a hostile upstream that sends 5 bytes past its Content-Length in the same write, sink after ${d}: the app gets exactly the declared body, the next request its own`, async () => {
      const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const r = await get(a, `/excess-${d}`, d);
        expect(r.body).toBe(body(`/excess-${d}`));
        const n = await get(a, `/after-excess-${d}`, d);
        expect(n.body).toBe(body(`/after-excess-${d}`));
      } finally {
        a.destroy();
      }
      await expectNothingLeft();
    });
  }
});

describe("a reader without a sink (the 402 body being read): the deferred end is still deferred", () => {
  it("20 answers read to 'end', each next request sent from the 'end' handler: one upstream connection serves them all", async () => {
    const accepted = up.accepted();
    for (let i = 0; i < 20; i++) {
      const answer = await client.send({
        url: new URL(`http://127.0.0.1:${up.port}/read-${i}`),
        method: "GET",
        headers: {},
      });
      const chunks: Buffer[] = [];
      answer.on("data", (c: Buffer) => chunks.push(c));
      await new Promise<void>((r) => answer.once("end", () => r()));
      expect(Buffer.concat(chunks).toString()).toBe(body(`/read-${i}`));
    }
    // The first one may open the connection; after that, every request finds it free.
    expect(up.accepted() - accepted).toBeLessThanOrEqual(1);
    await expectNothingLeft2();
  });

  async function expectNothingLeft2(): Promise<void> {
    await turn();
    await turn();
    for (const a of answersSeen) expect(scheduled(a)).toBe(false);
  }

  for (const d of ["now", "immediate1", "immediate2"] as const) {
    it(`destroyed (no error) ${d} after it finished, before its deferred end: no 'end', no error, no abort of the pooled connection, nothing left`, async () => {
      const accepted = up.accepted();
      const answer = (await client.send({
        url: new URL(`http://127.0.0.1:${up.port}/destroy-${d}`),
        method: "GET",
        headers: {},
      })) as unknown as Watched;
      // Head, body and end came in one write: finish() ran before the promise settled.
      // now: the first deferred turn is pending; immediate1: the second; immediate2: the end is
      // pushed already (nobody reading: no 'end' yet).
      expect(answer.complete).toBe(true);
      if (d !== "now") await turn();
      if (d === "immediate2") await turn();
      let ended = false;
      let errored: unknown;
      answer.on("end", () => (ended = true));
      answer.on("error", (e: unknown) => (errored = e));
      answer.destroy();
      await turn();
      await turn();
      await turn();
      expect(ended).toBe(false);
      expect(errored).toBeUndefined();
      expect(scheduled(answer)).toBe(false);
      // The answer was complete: its connection goes back to the pool, the next request reuses it.
      const n = await client.send({
        url: new URL(`http://127.0.0.1:${up.port}/after-destroy-${d}`),
        method: "GET",
        headers: {},
      });
      const chunks: Buffer[] = [];
      n.on("data", (c: Buffer) => chunks.push(c));
      await new Promise<void>((r) => n.once("end", () => r()));
      expect(Buffer.concat(chunks).toString()).toBe(body(`/after-destroy-${d}`));
      expect(up.accepted() - accepted).toBeLessThanOrEqual(1);
    });
  }

  it("destroyed with an error between the two deferred turns: one 'error', never an 'end'", async () => {
    const answer = (await client.send({
      url: new URL(`http://127.0.0.1:${up.port}/destroy-err`),
      method: "GET",
      headers: {},
    })) as unknown as Watched;
    await new Promise<void>((r) => setImmediate(r));
    let ended = false;
    const errors: unknown[] = [];
    answer.on("end", () => (ended = true));
    answer.on("error", (e: unknown) => errors.push(e));
    answer.destroy(new Error("cap"));
    for (let i = 0; i < 4; i++) await turn();
    expect(ended).toBe(false);
    expect(errors).toHaveLength(1);
    expect(scheduled(answer)).toBe(false);
  });

  it("sinkTo called between the two deferred turns: the pending second turn is cancelled, the sink ends once", async () => {
    const answer = (await client.send({
      url: new URL(`http://127.0.0.1:${up.port}/between`),
      method: "GET",
      headers: {},
    })) as unknown as Watched;
    // undici's head, body and completion came in one read; wait for the first deferred turn.
    for (let i = 0; i < 20 && !answer.complete; i++) await new Promise((r) => setTimeout(r, 1));
    expect(answer.complete).toBe(true);
    if (answer.endLater !== undefined) await new Promise((r) => setImmediate(r));
    const got: Buffer[] = [];
    let finals = 0;
    const { Writable } = await import("node:stream");
    const out = new Writable({
      write(c: Buffer, _e, cb) {
        got.push(c);
        cb();
      },
      final(cb) {
        finals += 1;
        cb();
      },
    });
    answer.sinkTo?.(out);
    expect(scheduled(answer)).toBe(false);
    for (let i = 0; i < 4; i++) await turn();
    expect(Buffer.concat(got).toString()).toBe(body("/between"));
    expect(finals).toBe(1);
    expect(lateEnds).toBe(0);
  });
});

describe("an app that is gone before the sink (pipeUpstream destroys the finished answer)", () => {
  it("the destroyed answer's deferred end is cancelled and the next app is served on the pooled connection", async () => {
    const accepted = up.accepted();
    const answer = (await client.send({
      url: new URL(`http://127.0.0.1:${up.port}/gone`),
      method: "GET",
      headers: {},
    })) as unknown as Watched;
    // A response already destroyed: pipeUpstream's early return path.
    const fakeRes = new http.ServerResponse(new http.IncomingMessage(null as unknown as net.Socket));
    fakeRes.destroy();
    pipeUpstream(answer, fakeRes, {});
    for (let i = 0; i < 4; i++) await turn();
    expect(answer.destroyed).toBe(true);
    expect(scheduled(answer)).toBe(false);
    expect(lateEnds).toBe(0);
    const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const r = await get(a, "/after-gone", "now");
      expect(r.body).toBe(body("/after-gone"));
    } finally {
      a.destroy();
    }
    expect(up.accepted() - accepted).toBeLessThanOrEqual(1);
  });
});
