import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { UpstreamClient } from "../../src/http/upstream-client.js";
import { pipeUpstream } from "../../src/proxy/respond.js";
import { startRawUpstream } from "../support/raw-upstream.js";
import type { RawUpstream } from "../support/raw-upstream.js";

/**
 * Attack review of 25a9a5a (UndiciAnswer.sinkTo): back-pressure stays bounded through the sink.
 * A 32 MiB answer (200 KB of it with the head, past the Readable's high-water mark before the
 * sink) to an app that takes one chunk per timer tick; pipeUpstream called at three moments.
 * What the proxy holds for the app (socket + response buffers) and the 'drain' listeners on the
 * response are sampled every millisecond.
 */
const TOTAL = 32 << 20;
let up: RawUpstream;
let client: UpstreamClient;
beforeAll(async () => {
  up = await startRawUpstream((s) => {
    s.write(
      Buffer.concat([
        Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${TOTAL}\r\n\r\n`),
        Buffer.alloc(200_000, 1),
      ]),
    );
    const chunk = Buffer.alloc(16 * 1024, 2);
    let sent = 200_000;
    const pump = () => {
      while (!s.destroyed && sent < TOTAL) {
        const c = chunk.subarray(0, Math.min(chunk.length, TOTAL - sent));
        sent += c.length;
        if (!s.write(c)) return void s.once("drain", pump);
      }
    };
    pump();
  });
  client = new UpstreamClient({ timeoutMs: 3000, connectTimeoutMs: 1000, caPems: [] });
});
afterAll(async () => {
  client.close();
  await up.close();
});

for (const delay of ["now", "setImmediate x3", "50 ms"] as const) {
  it(`sink after ${delay}: all 32 MiB arrive, at most 1 MiB held for the app, at most 1 'drain' listener`, async () => {
    let maxListeners = 0;
    let maxBuffered = 0;
    const app = http.createServer((_req, res) => {
      void client
        .send({ url: new URL(`http://127.0.0.1:${up.port}/x`), method: "GET", headers: {} })
        .then(async (a) => {
          if (delay === "setImmediate x3")
            await new Promise((r) => setImmediate(() => setImmediate(() => setImmediate(r))));
          if (delay === "50 ms") await new Promise((r) => setTimeout(r, 50));
          pipeUpstream(a, res, {});
          const t = setInterval(() => {
            maxListeners = Math.max(maxListeners, res.listenerCount("drain"));
            maxBuffered = Math.max(maxBuffered, (res.socket?.writableLength ?? 0) + res.writableLength);
          }, 1);
          res.once("close", () => clearInterval(t));
        });
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", () => r()));
    const port = (app.address() as AddressInfo).port;
    try {
      const got = await new Promise<number>((resolve, reject) => {
        http
          .get({ host: "127.0.0.1", port, path: "/", agent: false }, (res) => {
            let n = 0;
            res.on("data", (c: Buffer) => {
              n += c.length;
              res.pause();
              setTimeout(() => res.resume(), 1);
            });
            res.on("end", () => resolve(n));
            res.on("error", reject);
          })
          .on("error", reject);
      });
      expect(got).toBe(TOTAL);
      expect(maxBuffered).toBeLessThanOrEqual(1 << 20);
      expect(maxListeners).toBeLessThanOrEqual(1);
    } finally {
      app.closeAllConnections();
      await new Promise<void>((r) => app.close(() => r()));
    }
  }, 60_000);
}
