import http from "node:http";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UpstreamClient } from "../../src/http/upstream-client.js";
import type { UpstreamAnswer } from "../../src/http/upstream-client.js";
import { pipeUpstream } from "../../src/proxy/respond.js";
import { startRawUpstream } from "../support/raw-upstream.js";
import { afterDelay } from "../support/sockets.js";
import type { LoopDelay } from "../support/sockets.js";
import type { RawUpstream } from "../support/raw-upstream.js";

/**
 * Attack review of 25a9a5a (UndiciAnswer.sinkTo): the moment pipeUpstream is called is moved
 * against undici's callbacks on real sockets. A tiny app-facing http server sends the request
 * with UpstreamClient.send (undici), waits a chosen delay after the head, then calls the real
 * pipeUpstream. Every combination must give the app the whole body, ended, and the app's
 * kept-alive connection must then serve the next request.
 */
const TIMEOUT_MS = 800;
const small = Buffer.from("hello-sink");
const big = Buffer.alloc(300 * 1024);
for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

type Delay = Exclude<LoopDelay, "micro">;
const wait = afterDelay;

let up: RawUpstream;
let client: UpstreamClient;
let app: http.Server;
let appPort = 0;

/** What the upstream does, per path (the request head is the raw head). */
const answers: Record<string, (s: net.Socket) => void> = {
  "/small-one-write": (s) =>
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${small.length}\r\n\r\n${small.toString()}`),
  "/big-one-write": (s) =>
    s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n`), big])),
  "/big-head-then-body": (s) => {
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length}\r\n\r\n`);
    setTimeout(() => s.write(big), 20);
  },
  "/chunked-one-write": (s) =>
    s.write(
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${small.length.toString(16)}\r\n${small.toString()}\r\n0\r\n\r\n`,
    ),
  "/no-content": (s) => s.write("HTTP/1.1 204 No Content\r\nX-K: 1\r\n\r\n"),
  "/not-modified": (s) => s.write('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'),
  "/head": (s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
  "/next": (s) => s.write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"),
};
// Bodies around the 16 KiB high-water marks (the Readable's and the app socket's), head and
// body in one write; and the same with the rest 300 ms later (undici running, the sink's
// first write refused).
const edge = (n: number) => Buffer.alloc(n, 0x61 + (n % 26));
const EDGES = [16_000, 16_200, 16_300, 16_383, 16_384, 16_385, 16_600, 32_768, 65_536, 65_537];
for (const n of EDGES) {
  answers[`/edge-${n}`] = (s) =>
    s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n`), edge(n)]));
  answers[`/edge-late-${n}`] = (s) => {
    s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${n + 5}\r\n\r\n`), edge(n)]));
    setTimeout(() => s.write("tail!"), 300);
  };
}

beforeAll(async () => {
  up = await startRawUpstream((s, head) => {
    const path = head.split(" ")[1] ?? "";
    (answers[path] ?? (answers["/next"] as (s: net.Socket) => void))(s);
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
        pipeUpstream(answer, res, {});
      })
      .catch(() => res.destroy());
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", () => r()));
  appPort = (app.address() as AddressInfo).port;
});
afterAll(async () => {
  client?.close();
  app?.closeAllConnections();
  await new Promise<void>((r) => app.close(() => r()));
  await up?.close();
});

const agent = () => new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(
  a: http.Agent,
  path: string,
  delay: Delay,
  method = "GET",
  pauseMs = 0,
): Promise<{ status: number; body: Buffer; complete: boolean; socketPort: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port: appPort, path, method, agent: a, headers: { "x-delay": delay } },
      (res) => {
        const chunks: Buffer[] = [];
        const socketPort = res.socket.localPort ?? 0;
        if (pauseMs > 0) {
          res.pause();
          setTimeout(() => res.resume(), pauseMs);
        }
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks),
            complete: res.complete,
            socketPort,
          }),
        );
        res.on("error", reject);
        res.on("aborted", () => reject(new Error("aborted")));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error("client timeout")));
    req.on("error", reject);
    req.end();
  });
}

const delays: Delay[] = ["now", "immediate1", "immediate2", "immediate3", "ms50", "ms300"];

describe("pipeUpstream called at every moment against undici's callbacks", () => {
  for (const d of delays) {
    it(`a small answer in one write (head, body, end in one tick), sink after ${d}: whole, ended, next request served`, async () => {
      const a = agent();
      try {
        const r = await get(a, "/small-one-write", d);
        expect(r.status).toBe(200);
        expect(r.body.toString()).toBe(small.toString());
        const n = await get(a, "/next", "now");
        expect(n.body.toString()).toBe("next");
        expect(n.socketPort).toBe(r.socketPort);
      } finally {
        a.destroy();
      }
    });

    it(`a 300 KiB answer in one write (past the Readable's high-water mark before the sink), sink after ${d}: whole`, async () => {
      const a = agent();
      try {
        const r = await get(a, "/big-one-write", d);
        expect(r.status).toBe(200);
        expect(r.body.length).toBe(big.length);
        expect(sha(r.body)).toBe(sha(big));
        const n = await get(a, "/next", "now");
        expect(n.body.toString()).toBe("next");
      } finally {
        a.destroy();
      }
    });

    it(`a 300 KiB answer to an app that pauses 400 ms, sink after ${d}: whole`, async () => {
      const a = agent();
      try {
        const r = await get(a, "/big-head-then-body", d, "GET", 400);
        expect(r.body.length).toBe(big.length);
        expect(sha(r.body)).toBe(sha(big));
      } finally {
        a.destroy();
      }
    });

    it(`a chunked answer in one write, sink after ${d}: whole`, async () => {
      const a = agent();
      try {
        const r = await get(a, "/chunked-one-write", d);
        expect(r.body.toString()).toBe(small.toString());
        const n = await get(a, "/next", "now");
        expect(n.body.toString()).toBe("next");
      } finally {
        a.destroy();
      }
    });

    it(`204, 304 and HEAD (finish() at the head), sink after ${d}: answered and ended, next request served`, async () => {
      const a = agent();
      try {
        expect((await get(a, "/no-content", d)).status).toBe(204);
        expect((await get(a, "/not-modified", d)).status).toBe(304);
        const h = await get(a, "/head", d, "HEAD");
        expect(h.status).toBe(200);
        expect(h.body.length).toBe(0);
        const n = await get(a, "/next", "now");
        expect(n.body.toString()).toBe("next");
      } finally {
        a.destroy();
      }
    });
  }
});

describe("bodies at the high-water marks", () => {
  for (const n of EDGES)
    for (const d of ["now", "immediate2", "immediate3"] as Delay[]) {
      it(`${n} bytes in one write with the head, sink after ${d}; then ${n} + a tail 300 ms later: whole`, async () => {
        const a = agent();
        try {
          const r = await get(a, `/edge-${n}`, d);
          expect(r.body.equals(edge(n))).toBe(true);
          const late = await get(a, `/edge-late-${n}`, d);
          expect(late.body.equals(Buffer.concat([edge(n), Buffer.from("tail!")]))).toBe(true);
          const slow = await get(a, `/edge-late-${n}`, d, "GET", 500);
          expect(slow.body.length).toBe(n + 5);
        } finally {
          a.destroy();
        }
      });
    }
});
