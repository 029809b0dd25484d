import net from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";

/**
 * A hostile app sends requests whose Host header is long and different each time (refused
 * 400: not a host). Since 476b62c normaliseHost memoises every input it is asked about in a
 * Map of up to 1024 entries, keyed by the raw input: an input far past the 255-character
 * limit (returned null) is kept whole as a key. With max_header_bytes at 256 KiB (the config
 * allows up to 1 MiB) 400 such requests leave ~80 MiB held by the proxy after they are all
 * answered; 1024 × 1 MiB is 1 GiB. Before, nothing of a refused request outlived it.
 */
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const held = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

let w: ProxyWorld;
const HOST_BYTES = 200 * 1024;
const REQUESTS = 400;

beforeAll(async () => {
  w = await startProxyWorld((c) => {
    c.maxHeaderBytes = 256 * 1024;
    // Refused by name, before any lookup: the second case's answers come at once.
    c.egress.denyHosts = [...c.egress.denyHosts, "*.example"];
  });
});
afterAll(async () => {
  await w?.close();
});

function send(port: number, i: number, head?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("no answer in 5 s"));
    }, 5000);
    s.on("data", (d: Buffer) => (got += d.toString("latin1")));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.on("connect", () => {
      const host = `${String(i).padStart(6, "0")}${"a".repeat(HOST_BYTES)}.example`;
      (head === undefined ? s.end.bind(s) : s.write.bind(s))(
        head ?? `GET http://app.example/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
    });
  });
}

describe("attack: long Host headers against the host memo", () => {
  it("requests already answered leave no memory behind", async () => {
    const port = Number(new URL(w.proxyUrl).port);
    for (let i = 0; i < 20; i++) await send(port, 1_000_000 + i); // warm up
    const before = held();
    for (let i = 0; i < REQUESTS; i++) {
      const answer = await send(port, i);
      expect(answer.slice(0, 12)).toBe("HTTP/1.1 400");
    }
    const grew = held() - before;
    // The refused Host headers sum to ~80 MiB; a proxy that keeps none of them grows by little.
    expect(grew / 2 ** 20, "MiB the proxy still holds after the requests").toBeLessThan(16);
  }, 120_000);

  it("a valid host does not keep the long request target it was read from", async () => {
    // Absolute-form targets with distinct valid hosts and long paths: the memo's key was a
    // slice of the target, so each kept its whole target alive.
    const port = Number(new URL(w.proxyUrl).port);
    const path = `/${"p".repeat(HOST_BYTES)}`;
    // Valid names (egress refuses them by name: 403 at once) longer than 13 characters, which
    // V8 slices out of the target instead of copying; the Host header names another host, so
    // the target's slice is the one the memo is first asked about.
    const host = (i: number) => `host-${String(i).padStart(6, "0")}.example`;
    const head = (i: number) =>
      `GET http://${host(i)}${path} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n`;
    for (let i = 0; i < 20; i++) await send(port, 0, head(600 + i)); // warm up
    const before = held();
    for (let i = 0; i < 300; i++) {
      const answer = await send(port, 0, head(i));
      expect(answer.slice(0, 9)).toBe("HTTP/1.1 ");
    }
    const grew = held() - before;
    expect(grew / 2 ** 20, "MiB the proxy still holds after the requests").toBeLessThan(16);
  }, 120_000);
});
