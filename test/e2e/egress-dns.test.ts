import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import { curl } from "../support/clients.js";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { withProxyWorld } from "../support/proxy-fixture.js";
import { lastStatus, rawExchange } from "../support/raw-http.js";

/**
 * The egress policy holds after DNS on the pass-through path: the name is resolved once, every
 * address checked, and the connection made to the address that was checked. Host names are
 * compared in one spelling (case, trailing dot, IDNA). Names are pointed at the local origin by
 * an injected resolver (the proxy's own pinning code still does the checking and connecting),
 * and by /etc/hosts where this machine has such a name.
 */
let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await origin.close();
});

/** Every name the tests use resolves to the origin's loopback address. */
const toLoopback = async (_host: string) => [{ address: "127.0.0.1", family: 4 as const }];
const denyPrivate = (c: ProxyConfig) => (c.egress.denyPrivate = true);

describe("a name that resolves to a private address (pass-through path)", () => {
  it("is refused with 403 egress_denied when deny_private is on; the origin sees nothing", async () => {
    await withProxyWorld(
      denyPrivate,
      async (w) => {
        origin.received.length = 0;
        const r = await curl({
          proxy: w.proxyUrl,
          method: "GET",
          url: `http://rebind.example:${origin.port}/x`,
        });
        expect(r.status).toBe(403);
        expect(r.headers["x-stoka-proxy-error"]).toBe("egress_denied");
        expect(origin.received).toEqual([]);
      },
      { resolve: toLoopback },
    );
  });

  it("is reached at the pinned address when the policy allows it", async () => {
    await withProxyWorld(
      (c) => (c.egress.denyPrivate = false),
      async (w) => {
        origin.received.length = 0;
        const r = await curl({
          proxy: w.proxyUrl,
          method: "GET",
          url: `http://good.example:${origin.port}/x`,
        });
        expect(r.status).toBe(200);
        expect(r.headers["x-origin"]).toBe("yes");
        expect(origin.received.map((x) => x.headers.host)).toEqual([`good.example:${origin.port}`]);
      },
      { resolve: toLoopback },
    );
  });

  it("a blind CONNECT tunnel to such a name never reaches the origin", async () => {
    await withProxyWorld(
      denyPrivate,
      async (w) => {
        origin.received.length = 0;
        const port = Number(new URL(w.proxyUrl).port);
        await rawExchange(port, [
          `CONNECT rebind.example:${origin.port} HTTP/1.1\r\nHost: rebind.example:${origin.port}\r\n\r\n`,
          `GET /x HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n`,
        ]);
        expect(origin.received).toEqual([]);
      },
      { resolve: toLoopback },
    );
  });

  // A name this machine's /etc/hosts points at loopback (not `localhost`, which is refused by
  // name already): the system resolver, no injection.
  const hostsName = (() => {
    try {
      for (const line of readFileSync("/etc/hosts", "utf8").split("\n")) {
        const [address, ...names] = line.replace(/#.*/, "").trim().split(/\s+/);
        if (!address || !/^127\./.test(address)) continue;
        const name = names.find((n) => /^[a-z0-9-]+(\.[a-z0-9-]+)*$/i.test(n) && !/localhost/i.test(n));
        if (name) return name;
      }
    } catch {
      // no /etc/hosts: skipped below
    }
    return undefined;
  })();
  it.skipIf(!hostsName)(
    `/etc/hosts name ${hostsName ?? "(none on this machine)"} → 127.x is refused`,
    async () => {
      await withProxyWorld(denyPrivate, async (w) => {
        origin.received.length = 0;
        const r = await curl({
          proxy: w.proxyUrl,
          method: "GET",
          url: `http://${hostsName}:${origin.port}/x`,
        });
        expect(r.status).toBe(403);
        expect(origin.received).toEqual([]);
      });
    },
  );
});

describe("deny_hosts in every spelling of the name", () => {
  const denied = (c: ProxyConfig) => {
    c.egress.denyPrivate = false;
    c.egress.denyHosts = ["evil.example", "*.evil.example", "bücher.example"];
  };
  it.each([
    "evil.example.",
    "www.evil.example.",
    "EVIL.Example",
    "WWW.EVIL.EXAMPLE.",
    "xn--bcher-kva.example",
    "xn--bcher-kva.example.",
  ])("http://%s/ is 403 egress_denied", async (host) => {
    await withProxyWorld(
      denied,
      async (w) => {
        origin.received.length = 0;
        const r = await curl({ proxy: w.proxyUrl, method: "GET", url: `http://${host}:${origin.port}/x` });
        expect(r.status).toBe(403);
        expect(r.headers["x-stoka-proxy-error"]).toBe("egress_denied");
        expect(origin.received).toEqual([]);
      },
      { resolve: toLoopback },
    );
  });

  it("CONNECT evil.example.:443 is 403", async () => {
    await withProxyWorld(
      denied,
      async (w) => {
        const port = Number(new URL(w.proxyUrl).port);
        for (const target of ["evil.example.:443", "WWW.evil.example.:443"]) {
          const text = await rawExchange(port, [`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`]);
          expect(lastStatus(text), target).toBe(403);
        }
      },
      { resolve: toLoopback },
    );
  });

  it("a host that does not normalise is 400", async () => {
    await withProxyWorld(
      denied,
      async (w) => {
        const port = Number(new URL(w.proxyUrl).port);
        for (const host of ["evil.example..", "a..b", "ev%69l.example"]) {
          const text = await rawExchange(port, [
            `GET http://${host}/x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
          ]);
          expect(lastStatus(text), host).toBe(400);
        }
        expect(origin.received).toEqual([]);
      },
      { resolve: toLoopback },
    );
  });
});
