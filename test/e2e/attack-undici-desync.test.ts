import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { rawExchange } from "../support/sockets.js";

/**
 * Attack review of b5d9155 (undici upstream client), question 3: response smuggling and
 * desync on pooled undici connections, and upstream heads Node's setHeader may refuse. A
 * hand-written upstream answers per request path; "app A" sends the poisoned request and
 * "app B", on its own connection right after, must get the answer to its own request.
 */
const PAID = "http://test.api.stoka.space";
let w: ProxyWorld;
type Answer = (s: net.Socket, req: string) => void;
let answers: Record<string, Answer> = {};
const sockets = new Set<net.Socket>();
let server: net.Server;
let port = 0;
let accepted = 0;

const B_ANSWER = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Who: b\r\n\r\nb-answer";
const EVIL = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Who: evil\r\nSet-Cookie: stolen=1\r\n\r\nevil";

beforeAll(async () => {
  server = net.createServer((s) => {
    accepted += 1;
    sockets.add(s);
    s.on("error", () => undefined);
    s.once("close", () => sockets.delete(s));
    let got = "";
    s.on("data", (c: Buffer) => {
      got += c.toString("latin1");
      for (let i = 0; i < 10; i++) {
        const end = got.indexOf("\r\n\r\n");
        if (end < 0) return;
        const req = got.slice(0, end + 4);
        got = got.slice(end + 4);
        const path = req.split(" ")[1] ?? "";
        const key = Object.keys(answers).find((k) => path.endsWith(k));
        if (key) (answers[key] as Answer)(s, req);
        else s.write(B_ANSWER);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as AddressInfo).port;
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = 1000;
    c.resilience.rateLimit = null;
    c.resilience.breaker = null;
    c.paidHosts = c.paidHosts.map((e) => ({ ...e, upstream: new URL(`http://127.0.0.1:${port}`) }));
  });
});
afterAll(async () => {
  await w?.close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const proxyPort = () => Number(new URL(w.proxyUrl).port);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Path = "pass" | "paid";
const target = (via: Path, path: string) =>
  via === "pass" ? `http://127.0.0.1:${port}${path}` : `${PAID}${path}`;
const hostHeader = (via: Path) => (via === "pass" ? "x" : "test.api.stoka.space");

/** One request on a fresh app connection, read until the proxy closes it. */
function ask(via: Path, path: string, method = "GET", timeoutMs = 3000) {
  return rawExchange(
    proxyPort(),
    `${method} ${target(via, path)} HTTP/1.1\r\nHost: ${hostHeader(via)}\r\nConnection: close\r\n\r\n`,
    timeoutMs,
  );
}

/** A kept-alive app (Node's client, one socket): a second request on the same app connection. */
function nodeGet(via: Path, path: string, agent: http.Agent, method = "GET") {
  return new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>(
    (resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: proxyPort(),
          path: target(via, path),
          method,
          agent,
          headers: { host: hostHeader(via) },
        },
        (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString("latin1")));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end();
    },
  );
}

/** App B, right after A: it must get its own answer (B_ANSWER), on whatever upstream connection. */
async function appB(via: Path) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await nodeGet(via, `/v1/objects/b${i}`, agent));
    return results;
  } finally {
    agent.destroy();
  }
}

function expectOwn(results: { status: number; body: string; headers: http.IncomingHttpHeaders }[]) {
  for (const r of results) {
    expect(r.status).toBe(200);
    expect(r.body).toBe("b-answer");
    expect(r.headers["x-who"]).toBe("b");
    expect(r.headers["set-cookie"]).toBeUndefined();
  }
}

for (const via of ["pass", "paid"] as const) {
  describe(`${via === "pass" ? "pass-through" : "paid host"}: a pooled undici connection is never desynchronised`, () => {
    it("an upstream that answers twice in one write: the second answer reaches nobody", async () => {
      answers = { "/a-two": (s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${EVIL}`) };
      const a = await ask(via, "/v1/objects/a-two");
      expect(a.status).toBe(200);
      expect(a.body).toBe("ok");
      expectOwn(await appB(via));
    });

    it("stray bytes after a whole body, arriving while the connection is idle: reach nobody", async () => {
      answers = {
        "/a-stray": (s) => {
          s.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
          setTimeout(() => s.write(EVIL), 30);
        },
      };
      const a = await ask(via, "/v1/objects/a-stray");
      expect(a.body).toBe("ok");
      await sleep(80);
      expectOwn(await appB(via));
    });

    it("a 204 followed by a body: the app gets the 204, the body reaches nobody", async () => {
      answers = { "/a-204": (s) => s.write(`HTTP/1.1 204 No Content\r\n\r\n${EVIL}`) };
      const a = await ask(via, "/v1/objects/a-204");
      expect(a.status).toBe(204);
      expect(a.text).not.toContain("evil");
      expectOwn(await appB(via));
    });

    it("a 304 naming a Content-Length and then sending that many bytes: the bytes reach nobody", async () => {
      answers = {
        "/a-304": (s) =>
          s.write(`HTTP/1.1 304 Not Modified\r\nContent-Length: ${EVIL.length}\r\n\r\n${EVIL}`),
      };
      const a = await ask(via, "/v1/objects/a-304");
      expect(a.status).toBe(304);
      expect(a.text).not.toContain("evil");
      expectOwn(await appB(via));
    });

    it("a HEAD answered with body bytes: the bytes reach nobody", async () => {
      answers = {
        "/a-head": (s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${EVIL.length}\r\n\r\n${EVIL}`),
      };
      const a = await ask(via, "/v1/objects/a-head", "HEAD");
      expect(a.status).toBe(200);
      expect(a.text).not.toContain("evil");
      expectOwn(await appB(via));
    });

    it("a HEAD on a kept-alive app connection, then a GET on the same app connection: the GET gets its own answer", async () => {
      answers = {
        "/a-head2": (s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${EVIL.length}\r\n\r\n${EVIL}`),
      };
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const head = await nodeGet(via, "/v1/objects/a-head2", agent, "HEAD");
        expect(head.status).toBe(200);
        expectOwn([await nodeGet(via, "/v1/objects/b-same", agent)]);
      } finally {
        agent.destroy();
      }
    });

    it("an app that leaves before its answer: the late answer reaches the next app nowhere", async () => {
      answers = {
        "/a-late": (s) =>
          setTimeout(() => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Who: evil\r\n\r\nevil`), 300),
      };
      const app = net.connect(proxyPort(), "127.0.0.1");
      app.on("error", () => undefined);
      await new Promise<void>((r) => app.once("connect", () => r()));
      app.write(`GET ${target(via, "/v1/objects/a-late")} HTTP/1.1\r\nHost: ${hostHeader(via)}\r\n\r\n`);
      await sleep(100);
      app.destroy();
      await sleep(50);
      expectOwn(await appB(via));
      await sleep(400);
      expectOwn(await appB(via));
    });

    it("chunked answer with trailers: the body arrives whole, the next request is served", async () => {
      answers = {
        "/a-trailers": (s) =>
          s.write(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n3\r\n-ok\r\n0\r\nX-T: 1\r\n\r\n",
          ),
      };
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const r = await nodeGet(via, "/v1/objects/a-trailers", agent);
        expect(r.status).toBe(200);
        expect(r.body).toBe("ok-ok");
      } finally {
        agent.destroy();
      }
      expectOwn(await appB(via));
    });

    const BROKEN: [string, string][] = [
      [
        "conflicting Content-Length",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nok" + EVIL,
      ],
      [
        "Content-Length and Transfer-Encoding",
        `HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n${(EVIL.length + 2).toString(16)}\r\nok${EVIL}\r\n0\r\n\r\n`,
      ],
      ["an obs-fold header", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"],
      ["a bare-LF header", "HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 2\r\n\r\nok"],
      ["a control byte in a header value", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok"],
      ["a NUL in a header value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"],
      ["a space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 40\r\n\r\nok"],
      ["a control byte in the reason phrase", "HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok"],
    ];
    for (const [name, bytes] of BROKEN) {
      it(`an answer with ${name}: the app is answered (no crash, no hang), nothing smuggled`, async () => {
        answers = { "/a-broken": (s) => s.write(Buffer.from(bytes, "latin1")) };
        const a = await ask(via, "/v1/objects/a-broken");
        expect(a.closed).toBe(true);
        expect(a.text).not.toContain("evil");
        expectOwn(await appB(via));
      });
    }

    it("an upstream header with bytes 0x80-0xff (accepted by both parsers): relayed, no crash", async () => {
      answers = {
        "/a-latin1": (s) =>
          s.write(Buffer.from("HTTP/1.1 200 OK\r\nX-L: caf\xe9\r\nContent-Length: 2\r\n\r\nok", "latin1")),
      };
      const a = await ask(via, "/v1/objects/a-latin1");
      expect(a.status).toBe(200);
      expect(a.headers["x-l"]).toBe("caf\xe9");
      expectOwn(await appB(via));
    });

    it("upstream headers named like Object.prototype members are relayed as sent (constructor; toString/valueOf lower-case to non-members)", async () => {
      answers = {
        "/a-proto": (s) =>
          s.write(
            "HTTP/1.1 200 OK\r\nConstructor: c1\r\nToString: t1\r\nValueOf: v1\r\nContent-Length: 2\r\n\r\nok",
          ),
      };
      const a = await ask(via, "/v1/objects/a-proto");
      expect(a.status).toBe(200);
      // Node's parser gives {constructor: "c1", ...}; raw-headers.ts headersFromRaw reads
      // `out[name]` on a plain {} and finds Object.prototype's function, so it joins:
      // "function Object() { [native code] }, c1".
      expect(a.headers.constructor).toBe("c1");
      expect(a.headers.tostring).toBe("t1");
      expect(a.headers.valueof).toBe("v1");
    });
  });
}

describe("the proxy survives all of the above", () => {
  it("still serves, and opened a bounded number of upstream connections", async () => {
    expectOwn(await appB("pass"));
    expectOwn(await appB("paid"));
    expect(accepted).toBeLessThan(400);
  });
});
