import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { rawExchange } from "../support/sockets.js";

/**
 * Attack review of b5d9155 (undici upstream client), question 5: header fidelity and leaks on
 * the undici paths (pass-through bodiless requests; paid-host `send`). The upstream is
 * hand-written: it records the raw request head it got and answers with hop-by-hop headers,
 * our own X-Stoka-Proxy-* names, repeated Set-Cookie and a Via chain.
 */
const PAID = "http://test.api.stoka.space";
let w: ProxyWorld;
const heads: string[] = [];
const sockets = new Set<net.Socket>();
let server: net.Server;
let port = 0;

const ANSWER = [
  "HTTP/1.1 200 OK",
  "Connection: x-hop, keep-alive",
  "X-Hop: secret-hop",
  "Keep-Alive: timeout=5",
  "Proxy-Connection: keep-alive",
  "Proxy-Authenticate: Basic realm=x",
  "X-Stoka-Proxy-Paid: 999999",
  "x-stoka-proxy-error: forged",
  "X-Stoka-Proxy-Tx: forged-tx",
  "Set-Cookie: a=1; Path=/",
  "Set-Cookie: b=2; Path=/",
  "Cache-Control: no-cache",
  "Cache-Control: private",
  "Via: 1.1 upstream-cdn",
  "X-Plain: kept",
  "Transfer-Encoding: chunked",
  "",
  "4\r\nbody\r\n0\r\n\r\n",
].join("\r\n");

beforeAll(async () => {
  server = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
    s.once("close", () => sockets.delete(s));
    let got = "";
    s.on("data", (c: Buffer) => {
      got += c.toString("latin1");
      for (let i = 0; i < 10; i++) {
        const end = got.indexOf("\r\n\r\n");
        if (end < 0) return;
        heads.push(got.slice(0, end));
        got = got.slice(end + 4);
        s.write(ANSWER);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as AddressInfo).port;
  w = await startProxyWorld((c) => {
    c.upstream.timeoutMs = 1000;
    c.paidHosts = c.paidHosts.map((e) => ({ ...e, upstream: new URL(`http://127.0.0.1:${port}`) }));
  });
});
afterAll(async () => {
  await w?.close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

const proxyPort = () => Number(new URL(w.proxyUrl).port);

/** The header lines of an answer, in order, names lower-cased. */
function lines(text: string): [string, string][] {
  const head = text.slice(0, text.indexOf("\r\n\r\n"));
  return head
    .split("\r\n")
    .slice(1)
    .map((l) => {
      const i = l.indexOf(":");
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as [string, string];
    });
}

const APP_HEADERS = [
  "Host: app-chosen.example",
  "Connection: keep-alive, x-app-hop",
  "X-App-Hop: app-secret",
  "Keep-Alive: timeout=9",
  "Proxy-Connection: keep-alive",
  "Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==",
  "TE: trailers",
  "Trailer: X-T",
  "X-App-Plain: kept",
  "Cookie: c=1",
  "Via: 1.0 app-side",
].join("\r\n");

for (const via of ["pass", "paid"] as const) {
  const target = via === "pass" ? `http://127.0.0.1:PORT/h` : `${PAID}/v1/objects/h`;
  describe(`${via === "pass" ? "pass-through" : "paid host"} (undici)`, () => {
    it("the request upstream: hop-by-hop and Proxy-* gone, Via appended, Host the target's authority", async () => {
      heads.length = 0;
      const r = await rawExchange(
        proxyPort(),
        `GET ${target.replace("PORT", String(port))} HTTP/1.1\r\n${APP_HEADERS}\r\n\r\n`,
        1500,
      );
      expect(r.status).toBe(200);
      expect(heads).toHaveLength(1);
      const h = (heads[0] as string).toLowerCase();
      for (const gone of [
        "x-app-hop",
        "keep-alive: timeout",
        "proxy-connection",
        "proxy-authorization",
        "\r\nte:",
        "\r\ntrailer:",
        "app-secret",
        "c2vjcmv0",
      ]) {
        expect(h).not.toContain(gone);
      }
      expect(h).toContain("\r\nx-app-plain: kept");
      expect(h).toContain("\r\ncookie: c=1");
      expect(h).toMatch(/\r\nvia: 1\.0 app-side, 1\.1 stoka-proxy-[0-9a-f]+/);
      expect(h).toContain(`\r\nhost: 127.0.0.1:${port}`);
      expect(h).not.toContain("app-chosen.example");
      expect(h.match(/\r\nhost:/g)).toHaveLength(1);
    });

    it("the answer to the app: hop-by-hop and X-Stoka-Proxy-* from upstream gone, Set-Cookie kept apart, Via appended", async () => {
      const r = await rawExchange(
        proxyPort(),
        `GET ${target.replace("PORT", String(port))} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        1500,
      );
      expect(r.status).toBe(200);
      const ls = lines(r.text);
      const names = ls.map(([n]) => n);
      expect(names).not.toContain("x-hop");
      expect(names).not.toContain("keep-alive");
      expect(names).not.toContain("proxy-connection");
      expect(names).not.toContain("proxy-authenticate");
      expect(r.text).not.toContain("secret-hop");
      expect(r.text).not.toContain("forged");
      expect(r.text).not.toContain("999999");
      expect(ls.filter(([n]) => n === "set-cookie").map(([, v]) => v)).toEqual([
        "a=1; Path=/",
        "b=2; Path=/",
      ]);
      expect(ls.find(([n]) => n === "cache-control")?.[1]).toBe("no-cache, private");
      expect(ls.find(([n]) => n === "via")?.[1]).toMatch(/^1\.1 upstream-cdn, 1\.1 stoka-proxy-[0-9a-f]+$/);
      expect(ls.find(([n]) => n === "x-plain")?.[1]).toBe("kept");
      expect(r.body).toContain("body");
    });
  });
}

describe("secrets and logs", () => {
  it("nothing the app sent in Proxy-Authorization, nor the app's cookies, reaches the logs", async () => {
    const logs = w.logs();
    expect(logs).not.toContain("c2VjcmV0OnNlY3JldA==");
    expect(logs).not.toContain("app-secret");
  });
});
