import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ledger } from "../../src/ledger/ledger.js";
import { parseRequestTarget } from "../../src/http/request-target.js";
import { PLAIN_PATH, upstreamUrl } from "../../src/http/upstream-url.js";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { raw, startRecorder, startTrap } from "../support/attack-review-3b9-recorder.js";
import type { Recorder } from "../support/attack-review-3b9-recorder.js";

/**
 * Attack review of 48d9dac, area 3: upstreamUrl's one-parse fast path for PLAIN_PATH targets
 * (`new URL(origin.origin + path)` instead of the pathname/search setters).
 *  - In process: for ANY string PLAIN_PATH accepts (not only those request-target.ts lets
 *    through: the signer role and `stoka-proxy pay` hand it URL-serialised paths such as
 *    `//evil.example/x`), the fast path gives the very URL the setters give, on the same origin.
 *  - Built proxy: crafted targets (//host, /\host, dot-segments, @, ?//, tabs, non-ASCII, long)
 *    in forward and gateway mode: never a byte to another host (a trap listener), and what the
 *    paid host receives is exactly the setters' serialisation; payments and `Authorization:
 *    Stellar` go to the paid host's upstream only, for the path the route and ledger name.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
// The sources under tsx, as the other process tests run them (a fresh clone has no dist/).
const CLI = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
const HOST = "test.api.stoka.space";

/** 476b62c's upstreamUrl: the setters. */
function viaSetters(origin: string, path: string, basePath = ""): URL {
  const url = new URL(new URL(origin).origin);
  const q = path.indexOf("?");
  url.pathname = `${basePath}${q < 0 ? path : path.slice(0, q)}`;
  url.search = q < 0 ? "" : path.slice(q);
  return url;
}

describe("attack: upstreamUrl fast path vs the setters (in process)", () => {
  const ORIGINS = [
    "https://stoka.internal:8443",
    "http://127.0.0.1:9",
    "https://[::1]:8443",
    "https://api.stoka.space",
    "http://xn--bcher-kva.example:80",
  ];
  const pieces = fc.constantFrom(
    ..."aZ09-._~!$&()*+,;=:@/%?".split(""),
    "//",
    "..",
    ".",
    "%2e",
    "%2E",
    "%2f",
    "%5c",
    "%00",
    "%zz",
    "%",
    "@evil.example",
    "//evil.example:1/",
    "?//evil.example/",
    "/..",
    "/./",
  );
  it("gives the same href and origin for every string PLAIN_PATH accepts (unchecked targets too)", () => {
    let plain = 0;
    fc.assert(
      fc.property(fc.constantFrom(...ORIGINS), fc.array(pieces, { maxLength: 24 }), (origin, parts) => {
        const path = `/${parts.join("")}`;
        if (!PLAIN_PATH.test(path)) return;
        plain += 1;
        const o = new URL(origin);
        const fast = upstreamUrl(o, path);
        const slow = viaSetters(origin, path);
        expect(fast.href).toBe(slow.href);
        expect(fast.origin).toBe(o.origin);
        expect(fast.host).toBe(o.host);
      }),
      { numRuns: 60_000 },
    );
    expect(plain).toBeGreaterThan(10_000);
  });

  it.each([
    "//evil.example/x",
    "///evil.example/x",
    "//evil.example:443@x/",
    "/%2e%2e//evil.example/",
    "/..//evil.example/",
    "/.//evil.example/",
    "/@evil.example",
    "/:@evil.example:80",
    "/a?//evil.example/#",
    "/a??",
    "/?",
    "/a?b?c",
  ])("%s stays on the origin, as with the setters", (path) => {
    const o = new URL("https://stoka.internal:8443");
    if (path.includes("#")) {
      expect(PLAIN_PATH.test(path)).toBe(false);
    }
    const fast = upstreamUrl(o, path);
    expect(fast.href).toBe(viaSetters(o.href, path).href);
    expect(fast.host).toBe("stoka.internal:8443");
  });

  it("a very long plain target: same URL, same origin", () => {
    const path = `/v1/retrieve/${"a/".repeat(40_000)}?${"q=1&".repeat(10_000)}x`;
    expect(PLAIN_PATH.test(path)).toBe(true);
    const o = new URL("https://stoka.internal");
    expect(upstreamUrl(o, path).href).toBe(viaSetters(o.href, path).href);
  });
});

let sb: Sandbox;
let rec: Recorder;
let trap: Awaited<ReturnType<typeof startTrap>>;
let p: ProxyProcess;
let dataDir: string;

beforeAll(async () => {
  sb = await startSandbox();
  rec = await startRecorder(sb.emulator.httpUrl);
  trap = await startTrap();
  const written = writeProxyConfig(sb, {
    budgets: [{ name: "day", limits: { day: "1 USDC" } }],
    log_level: "debug",
    paid_hosts: [{ host: HOST, upstream: rec.url }],
    gateway: { upstream: rec.url },
    max_header_bytes: 256 * 1024,
  });
  dataDir = written.dataDir;
  p = await startProxyProcess(sb, written.configPath, written.dataDir, { cli: CLI });
}, 60_000);

afterAll(async () => {
  await p?.stop("SIGKILL");
  await rec?.close();
  trap?.close();
  await sb?.close();
});

describe("attack: crafted request targets through the built proxy", () => {
  const T = () => `127.0.0.1:${trap.port}`;
  const targets = () => [
    `//${T()}/x`,
    `///${T()}/x`,
    `/\\${T()}/x`,
    `/v1/retrieve/%2e%2e/x`,
    `/v1/retrieve/a/%2E%2e%2fb`,
    `/v1/retrieve/a/.%2e/b`,
    `/@${T()}/x`,
    `/v1/retrieve/a@${T()}`,
    `/v1/retrieve/k?u=//${T()}/&x=@${T()}`,
    `/v1/retrieve/k?//${T()}`,
    `/v1/retrieve/k??//${T()}`,
    `/v1/retrieve/k?#//${T()}`,
    `/v1/retrieve/%41%2f%2F${T()}`,
    `/v1/retrieve/k;jsessionid=${T()}`,
    `/v1/retrieve/:@!$&'()*+,;=`,
    `/v1/retrieve/a%00b`,
    `/v1/retrieve/k?%zz`,
    `/v1/retrieve/${"L".repeat(60_000)}`,
    `/v1/retrieve/\xe9t\xe9`,
    `/v1/retrieve/a\tb`,
    `/v1/retrieve/a\rb`,
  ];

  const expectedSent = (path: string): string | null => {
    const parsed = parseRequestTarget(path);
    if (!parsed.ok) return null;
    const u = viaSetters(rec.url, parsed.target.path);
    return `${u.pathname}${u.search}`;
  };

  for (const form of ["absolute", "origin"] as const) {
    it(`${form}-form: nothing reaches another host, the paid host gets the setters' serialisation`, async () => {
      const port = Number(new URL(p.url).port);
      const report: string[] = [];
      for (const path of targets()) {
        rec.seen.length = 0;
        const line = form === "absolute" ? `http://${HOST}${path}` : path;
        const a = await raw(
          port,
          Buffer.from(`GET ${line} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`, "latin1"),
        );
        const want = expectedSent(path);
        const got = rec.seen.map((s) => s.url);
        const name = `${path.slice(0, 80)} (${path.length} chars): ${a.text.slice(0, 200)}`;
        if (want === null) {
          expect(got.length, name).toBe(0);
          expect([400, 414, 431], name).toContain(a.status);
        } else {
          expect(got.length, name).toBe(1);
          expect(got[0] === want, `${name}\nsent ${got[0]?.slice(0, 120)}\nwant ${want.slice(0, 120)}`).toBe(
            true,
          );
        }
        report.push(`${a.status} ${path.slice(0, 50)} -> ${got[0]?.slice(0, 60) ?? "-"}`);
      }
      if (process.env.ATTACK_DEBUG) console.log(report.join("\n"));
      expect(trap.count(), report.join("\n")).toBe(0);
    }, 120_000);
  }

  it("a paid request with a crafted query is paid to the paid host's upstream only, for the path it names", async () => {
    const port = Number(new URL(p.url).port);
    rec.seen.length = 0;
    const before = sb.emulator.chargedTotal(sb.wallet.publicKey());
    const body = "c".repeat(42);
    const path = `/v1/store?u=//${T()}/&at=@${T()}`;
    const a = await raw(
      port,
      `POST http://${HOST}${path} HTTP/1.1\r\nHost: ${HOST}\r\nX-Stoka-Key: crafted-q\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(a.status, a.text.slice(0, 300)).toBe(201);
    const paid = rec.seen.filter((s) => s.headers["x-payment"]);
    expect(paid.map((s) => s.url)).toEqual([path]);
    expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(before + 1400n);
    const db = openDatabase(join(dataDir, "stoka-proxy.db"));
    try {
      const row = new Ledger(db)
        .latest()
        .find((r) => String(r.url).includes("crafted") || String(r.url).includes("/v1/store?u="));
      expect(row, "a ledger row for the payment").toBeDefined();
      expect(new URL(String(row?.url)).host).not.toBe(T());
      expect(new URL(String(row?.url)).pathname).toBe("/v1/store");
    } finally {
      db.close();
    }
    expect(trap.count()).toBe(0);
  }, 60_000);

  it("a wallet-signed route with a crafted query: the challenge and Authorization: Stellar go to the paid host only", async () => {
    const port = Number(new URL(p.url).port);
    rec.seen.length = 0;
    const path = `/v1/me/usage?next=//${T()}/&x=@${T()}`;
    const a = await raw(
      port,
      `GET http://${HOST}${path} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`,
    );
    expect(a.status, a.text.slice(0, 300)).toBe(200);
    const signed = rec.seen.filter((s) => String(s.headers.authorization ?? "").startsWith("Stellar "));
    expect(signed.map((s) => s.url)).toEqual([path]);
    expect(rec.seen.some((s) => s.url === "/v1/auth/challenge")).toBe(true);
    expect(trap.count()).toBe(0);
  }, 60_000);
});
