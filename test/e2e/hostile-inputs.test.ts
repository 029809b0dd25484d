import type net from "node:net";
import tls from "node:tls";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_STATUS } from "../../src/errors.js";
import type { ErrorCode } from "../../src/errors.js";
import { AdminServer } from "../../src/observability/admin.js";
import { ROUTE_NAMES } from "../../src/stoka/route-names.js";
import type { MessageSigner } from "../../src/wallet/message-signer.js";
import { issueLeafCertificate } from "../../src/tls/certificates.js";
import { encodeBase64Json } from "../../src/x402/payment-header.js";
import { startHostileUpstream as startRecorder } from "../support/hostile.js";
import type { HostileUpstream as Recorder } from "../support/hostile.js";
import { startHostileUpstream } from "../support/hostile-upstream.js";
import type { HostileAnswer, HostileUpstream } from "../support/hostile-upstream.js";
import { startProxyWorld, withProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { connect, openTunnel } from "../support/sockets.js";

/**
 * Hostile input, through the running proxy over real sockets: generated request targets and
 * authorities (absolute-form, gateway origin-form, inside CONNECT tunnels plain and
 * TLS-intercepted), Host games, smuggling shapes, and generated 402 challenges and lying
 * receipts from a hostile paid host. Whatever arrives, for every case:
 *
 *   - nothing reaches a host that is not the request's configured upstream: the "other" host
 *     (egress denies every non-paid host here) and the decoy paid host record all they receive,
 *     and must receive nothing (so no X-PAYMENT, PAYMENT-SIGNATURE or Authorization: Stellar
 *     either);
 *   - the signer is called at most once per inbound request, and for generated challenges
 *     exactly when the challenge is well formed and passes the pinned terms;
 *   - the emulator and the hostile host are paid at most once per inbound request;
 *   - every answer is either the proxy's (a 4xx/5xx with a code from errors.ts, never
 *     `internal`) or the upstream's own, relayed (it carries our Via);
 *   - afterwards the proxy still answers its health probe and still pays a normal request.
 *
 * The properties are time-bounded (fast-check's interruptAfterTimeLimit); a failure prints
 * its seed and path, to replay with `{ seed, path }` in the fc.assert options.
 */
const PAID = "test.api.stoka.space";
const HOSTILE = "hostile.test";
const DECOY = "decoy.test";
/** Time budgets per property, ms (the whole file stays around a minute). */
const BUDGET = {
  targets: 5000,
  gateway: 4000,
  tunnel: 4000,
  tls: 4000,
  authority: 4000,
  smuggle: 4000,
  host: 3000,
  walletAuth: 3000,
};
const CHALLENGE_BUDGET = { body: 7000, header: 5000 };
const NUM_RUNS = 100_000;
/** The most a paid request may buffer in this world (max_buffered_body_bytes). */
const MAX_BODY = 4096;
const timed = (ms: number) => ({ numRuns: NUM_RUNS, plugins: [fc.interruptAfterTimeLimit(ms)] });
/** Per-test timeout: the property's budget plus its slowest last run and the health check. */
const slack = (ms: number) => ms + 30_000;

class CountingMessageSigner implements MessageSigner {
  calls = 0;
  constructor(private readonly inner: MessageSigner) {}
  get address() {
    return this.inner.address;
  }
  signMessage(message: string): Promise<string> {
    this.calls += 1;
    return this.inner.signMessage(message);
  }
}

let w: ProxyWorld;
let other: Recorder;
let decoy: HostileUpstream;
let hostile: HostileUpstream;
let admin: AdminServer;
let messages: CountingMessageSigner;
let OTHER = "";
let OTHER_TLS = "";

beforeAll(async () => {
  decoy = await startHostileUpstream();
  hostile = await startHostileUpstream();
  w = await startProxyWorld((c, sandbox) => {
    c.paidHosts.push({ host: HOSTILE, upstream: new URL(hostile.url), payTo: [sandbox.payTo] });
    c.paidHosts.push({ host: DECOY, upstream: new URL(decoy.url), payTo: [sandbox.payTo] });
    // Every host that is not a paid host is refused: a request reaching `other` is a bug.
    c.egress.denyHosts = ["**"];
    // Generated exchanges repeat identical requests and leave payments indeterminate on
    // purpose, each judged on its own: idempotency, the breaker and retries have their own tests.
    c.resilience.idempotency = null;
    c.resilience.breaker = null;
    c.resilience.retry.maxAttempts = 1;
    c.resilience.rateLimit = null;
    c.upstream.timeoutMs = 2000;
    c.timeouts.headersMs = 1500;
    c.timeouts.requestMs = 3000;
    c.maxBufferedBodyBytes = MAX_BODY;
    c.budgets = [
      {
        name: "hostile-suite",
        match: {},
        perRequestMax: 500_000n,
        limits: [{ period: { kind: "calendar", unit: "day" }, amount: 1_000_000_000n }],
      },
    ];
  });
  const leaf = await issueLeafCertificate(w.sandbox.ca, ["127.0.0.1", PAID]);
  other = await startRecorder(undefined, leaf);
  OTHER = `127.0.0.1:${other.port}`;
  OTHER_TLS = `127.0.0.1:${other.tlsPort ?? 0}`;
  // The decoy is a configured paid host that would be paid for anything sent its way.
  decoy.script = (r) =>
    r.headers["x-payment"]
      ? { status: 200, body: "decoy paid" }
      : challenge(JSON.stringify(body402([payable()])));
  admin = new AdminServer({ host: "127.0.0.1", port: 0 }, w.proxy.registry, () => w.proxy.readiness());
  await admin.listen();
  const inner = w.proxy.ctx.messageSigner;
  if (!inner) throw new Error("the world has no message signer");
  messages = new CountingMessageSigner(inner);
  w.proxy.ctx.messageSigner = messages;
}, 30_000);

afterAll(async () => {
  await admin?.close();
  await w?.close();
  await Promise.all([other?.close(), decoy?.close(), hostile?.close()]);
});

const proxyPort = () => Number(new URL(w.proxyUrl).port);

// ---------------------------------------------------------------------------------------------
// Talking to the proxy: raw bytes in, every response out (pipelined ones included).

interface Head {
  status: number;
  reason: string;
  headers: Record<string, string>;
}
interface Exchange {
  heads: Head[];
  text: string;
  closed: boolean;
}

/** Response heads in `text`, in order, skipping bodies by Content-Length or chunked framing. */
function parseResponses(text: string): Head[] {
  const heads: Head[] = [];
  let at = 0;
  while (at < text.length) {
    const m = /^HTTP\/1\.[01] (\d{3}) ?([^\r\n]*)\r\n/.exec(text.slice(at));
    const end = text.indexOf("\r\n\r\n", at);
    if (!m || end < 0) break;
    const headers: Record<string, string> = {};
    for (const line of text.slice(at + m[0].length, end).split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(m[1]);
    heads.push({ status, reason: m[2] ?? "", headers });
    at = end + 4;
    // 1xx, 204, 304 and a CONNECT's 200 have no body.
    if (status < 200 || status === 204 || status === 304 || m[2] === "Connection Established") continue;
    if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
      for (;;) {
        const lineEnd = text.indexOf("\r\n", at);
        if (lineEnd < 0) return heads;
        const size = parseInt(text.slice(at, lineEnd), 16);
        at = lineEnd + 2 + (Number.isNaN(size) ? 0 : size) + 2;
        if (!size) {
          // The last chunk is followed by an empty trailer section.
          break;
        }
      }
    } else if (headers["content-length"] !== undefined) at += Number(headers["content-length"]);
    else break; // read until close
  }
  return heads;
}

/** Exchanges not finished yet (a time-limited property may stop waiting for its last run). */
let inFlight = 0;

/** Writes `bytes` (latin1: each char one byte) on `socket` and reads until it closes or `ms` pass. */
function talk(socket: net.Socket | tls.TLSSocket, bytes: string, ms = 5000): Promise<Exchange> {
  inFlight += 1;
  return new Promise((resolve) => {
    let text = "";
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      inFlight -= 1;
      clearTimeout(timer);
      socket.destroy();
      resolve({ heads: parseResponses(text), text, closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.on("data", (c: Buffer) => (text += c.toString("latin1")));
    socket.on("error", () => finish(true));
    socket.once("close", () => finish(true));
    socket.write(bytes, "latin1");
    socket.resume();
  });
}

/** UTF-8 text as the latin1 string of its bytes, for `talk`. */
const bytesOf = (s: string) => Buffer.from(s, "utf8").toString("latin1");

async function direct(bytes: string): Promise<Exchange> {
  return talk(await connect(proxyPort()), bytes);
}

async function throughTunnel(authority: string, bytes: string, secure: boolean): Promise<Exchange> {
  const raw = await openTunnel(proxyPort(), authority);
  if (!secure) return talk(raw, bytes);
  const host = authority.replace(/:\d+$/, "");
  const s = tls.connect({ socket: raw, servername: host, ca: w.sandbox.ca.certPem });
  await new Promise<void>((resolve, reject) => {
    s.once("secureConnect", () => resolve());
    s.once("error", reject);
  });
  return talk(s, bytes);
}

// ---------------------------------------------------------------------------------------------
// What must hold whatever was sent.

interface Before {
  other: number;
  decoy: number;
  hostile: number;
  hostilePaid: number;
  signs: number;
  messages: number;
  charges: number;
  emulator: number;
}

const emulatorRequests = () => [...w.sandbox.emulator.state.requests.values()].reduce((a, b) => a + b, 0);

function snapshot(): Before {
  return {
    other: other.seen.length,
    decoy: decoy.received.length,
    hostile: hostile.received.length,
    hostilePaid: hostile.paidRequests(),
    signs: w.signCalls(),
    messages: messages.calls,
    charges: w.sandbox.emulator.state.charges.length,
    emulator: emulatorRequests(),
  };
}

/**
 * Waits until no exchange is open and nothing moves any more (every peer's count and the
 * signer's stable for a moment), so one case's last request is never counted in the next.
 */
async function settle(): Promise<void> {
  const counts = () => JSON.stringify([snapshot(), hostile.received.length]);
  const deadline = Date.now() + 15_000;
  let last = counts();
  let stableSince = Date.now();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    const now = counts();
    if (now !== last || inFlight > 0) {
      last = now;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 250) return;
  }
}

/** Nothing went where it must not; nothing was signed or paid more than once per inbound request. */
function expectPeersSafe(before: Before, inbound: number, allowDecoy = false): void {
  expect(other.seen.slice(before.other).map((s) => `${s.method} ${s.target}`)).toEqual([]);
  expect(other.secrets()).toEqual([]);
  if (!allowDecoy) expect(decoy.received.slice(before.decoy).map((r) => `${r.method} ${r.url}`)).toEqual([]);
  expect(w.signCalls() - before.signs).toBeLessThanOrEqual(inbound);
  expect(w.sandbox.emulator.state.charges.length - before.charges).toBeLessThanOrEqual(inbound);
  expect(hostile.paidRequests() - before.hostilePaid).toBeLessThanOrEqual(inbound);
  // A wallet-auth request tries at most two fresh challenges.
  expect(messages.calls - before.messages).toBeLessThanOrEqual(2 * inbound);
}

const CODES = new Set(Object.keys(ERROR_STATUS));

/** Each answer is the proxy's own (a code from errors.ts, its status) or the upstream's, relayed. */
function expectAnswersSafe(x: Exchange, atLeast = 1): void {
  const finals = x.heads.filter((h) => h.status >= 200);
  expect(finals.length, x.text.slice(0, 400)).toBeGreaterThanOrEqual(atLeast);
  for (const h of finals) {
    const code = h.headers["x-stoka-proxy-error"];
    if (code === undefined) {
      // Not the proxy's refusal: an upstream's answer, which reaches the app through our Via.
      expect(h.headers.via ?? "", x.text.slice(0, 400)).toMatch(/stoka-proxy-/);
      continue;
    }
    expect(CODES.has(code), code).toBe(true);
    expect(code).not.toBe("internal");
    expect(h.status, code).toBe(ERROR_STATUS[code as ErrorCode]);
    expect(h.status).toBeGreaterThanOrEqual(400);
  }
}

/** The proxy still answers its health probe and still pays a normal request, exactly once. */
async function expectHealthy(): Promise<void> {
  const health = await fetch(`${admin.url}/healthz`);
  expect(health.status).toBe(200);
  const before = snapshot();
  const charged = w.charged();
  const key = `healthy-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const x = await direct(
    `POST http://${PAID}/v1/store HTTP/1.1\r\nHost: ${PAID}\r\nX-Stoka-Key: ${key}\r\nContent-Length: 42\r\nConnection: close\r\n\r\n${"h".repeat(42)}`,
  );
  expect(x.heads.at(-1)?.status, x.text.slice(0, 400)).toBe(201);
  expect(x.heads.at(-1)?.headers["x-stoka-proxy-paid"]).toBe("1400");
  expect(w.charged() - charged).toBe(1400n);
  expect(w.signCalls() - before.signs).toBe(1);
}

// ---------------------------------------------------------------------------------------------
// Generators.

/** Pieces a hostile path is made of: separators, dot-segments, escapes, bytes, other hosts. */
const pathPiece = () =>
  fc.oneof(
    {
      weight: 8,
      arbitrary: fc.constantFrom(
        "/",
        "//",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        "@",
        "#",
        "?",
        "&",
        "=",
        ";",
        ":",
        "%",
        "%zz",
        "%4",
        "%00",
        "%0d%0a",
        "%20",
        "%73",
        "%76%31",
        "é",
        "\u202e",
        "\u{1F642}",
        "\u0000",
        "\r",
        "\n",
        "\r\n",
        "\t",
        " ",
        "\u007f",
        "\u001b",
        "v1",
        "store",
        "retrieve",
        "object",
        "key",
        "auth",
        "challenge",
        "me",
        "usage",
        ".well-known",
        "stoka.json",
        "*",
        "~",
        "http:",
        "https:",
        PAID,
        DECOY,
        "127.0.0.1:OTHER",
        "localhost",
        "127.1",
        "[::1]",
      ),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 8 }) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 4 }) },
  );

/** A request target's path part: mostly starting with /, sometimes not, sometimes very long. */
const hostilePath = () =>
  fc
    .oneof(
      { weight: 10, arbitrary: fc.array(pathPiece(), { maxLength: 12 }).map((p) => `/${p.join("")}`) },
      { weight: 2, arbitrary: fc.array(pathPiece(), { maxLength: 8 }).map((p) => p.join("")) },
      {
        weight: 1,
        arbitrary: fc.integer({ min: 1000, max: 40_000 }).map((n) => `/v1/retrieve/${"a".repeat(n)}`),
      },
      { weight: 1, arbitrary: fc.constantFrom("/v1/store", "/.well-known/stoka.json", "/v1/object/k") },
    )
    .map((p) => p.replaceAll("OTHER", String(other.port)));

/** Host header values an app might send to steer a request elsewhere. */
const hostHeader = () =>
  fc.oneof(
    fc.constantFrom(PAID, DECOY, HOSTILE, "127.0.0.1:OTHER", "localhost", "", `${PAID}@127.0.0.1:OTHER`),
    fc.string({ maxLength: 12 }),
  );

const methods = () => fc.constantFrom("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH");

/** A whole request head and body, for one target. The last request on a connection closes it. */
function requestBytes(method: string, target: string, host: string | null, body = "x"): string {
  const h = host === null ? "" : `Host: ${host.replaceAll("OTHER", String(other.port))}\r\n`;
  return bytesOf(
    `${method} ${target} HTTP/1.1\r\n${h}X-Stoka-Key: hostile\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

// ---------------------------------------------------------------------------------------------

describe("request targets", () => {
  it(
    "absolute-form to a paid host, any path and Host: never another host, at most one payment",
    async () => {
      await fc.assert(
        fc.asyncProperty(methods(), hostilePath(), hostHeader(), async (method, path, host) => {
          const before = snapshot();
          const x = await direct(requestBytes(method, `http://${PAID}${path}`, host));
          expectAnswersSafe(x);
          expectPeersSafe(before, 1);
        }),
        timed(BUDGET.targets),
      );
      await settle();
      await expectHealthy();
    },
    slack(BUDGET.targets),
  );

  it(
    "origin-form (gateway mode), any path and Host: only the gateway's upstream is asked",
    async () => {
      await fc.assert(
        fc.asyncProperty(methods(), hostilePath(), hostHeader(), async (method, path, host) => {
          const before = snapshot();
          const x = await direct(requestBytes(method, path, host));
          expectAnswersSafe(x);
          expectPeersSafe(before, 1);
          expect(hostile.received.length).toBe(before.hostile);
        }),
        timed(BUDGET.gateway),
      );
      await settle();
      await expectHealthy();
    },
    slack(BUDGET.gateway),
  );

  /** Inside a tunnel: origin-form paths, or absolute-form naming the tunnel's or another authority. */
  const innerTarget = (scheme: "http" | "https", port: number) =>
    fc.oneof(
      { weight: 4, arbitrary: hostilePath() },
      {
        weight: 1,
        arbitrary: fc
          .tuple(
            fc.constantFrom(
              `${scheme}://${PAID}:${port}`,
              `${scheme}://${PAID}`,
              `http://${DECOY}`,
              `http://127.0.0.1:${other.port}`,
              `https://${OTHER_TLS}`,
              `${scheme}://${PAID}:${port}@127.0.0.1:${other.port}`,
            ),
            hostilePath(),
          )
          .map(([origin, path]) => `${origin}${path}`),
      },
    );

  it(
    "inside a plain CONNECT tunnel to a paid host: never another host",
    async () => {
      await fc.assert(
        fc.asyncProperty(methods(), innerTarget("http", 80), hostHeader(), async (method, target, host) => {
          const before = snapshot();
          const x = await throughTunnel(`${PAID}:80`, requestBytes(method, target, host), false);
          expectAnswersSafe(x);
          expectPeersSafe(before, 1);
        }),
        timed(BUDGET.tunnel),
      );
      await settle();
      await expectHealthy();
    },
    slack(BUDGET.tunnel),
  );

  it(
    "inside a TLS-intercepted tunnel to a paid host: never another host",
    async () => {
      await fc.assert(
        fc.asyncProperty(methods(), innerTarget("https", 443), hostHeader(), async (method, target, host) => {
          const before = snapshot();
          const x = await throughTunnel(`${PAID}:443`, requestBytes(method, target, host), true);
          expectAnswersSafe(x);
          expectPeersSafe(before, 1);
        }),
        timed(BUDGET.tls),
      );
      await settle();
      await expectHealthy();
    },
    slack(BUDGET.tls),
  );
});

describe("authorities", () => {
  /** Spellings around the paid host's name, with ports, userinfo, brackets and odd IP forms. */
  const authority = () =>
    fc
      .tuple(
        fc.constantFrom("", "", "", "x@", `${DECOY}@`, `127.0.0.1:${other.port}@`, "[", "%40", "user:pw@"),
        fc.constantFrom(
          PAID,
          PAID.toUpperCase(),
          `${PAID}.`,
          `${PAID}..`,
          `.${PAID}`,
          "tеst.api.stoka.space", // Cyrillic е
          "test.api.stoka.spаce", // Cyrillic а
          "xn--tst-jed.api.stoka.space",
          "test.api.stoka.space\u3002",
          "test%2eapi.stoka.space",
          "test.api.stoka.space%00",
          "127.1",
          "0x7f.0.0.1",
          "2130706433",
          "017700000001",
          "[::1]",
          "[::ffff:127.0.0.1]",
          "[::1%25lo]",
          "[fe80::1]",
          "localhost",
          "",
        ),
        fc.constantFrom(
          "",
          "",
          ":80",
          ":443",
          ":080",
          ":0",
          ":65536",
          ":99999",
          ":-1",
          ":+80",
          ":8o",
          ":",
          `:${other.port}`,
        ),
        fc.constantFrom("", "", "", "@127.0.0.1", `:${other.port}`, "#x", "?x", "/..", "\\x"),
      )
      .map((parts) => parts.join(""));

  it(
    "absolute-form and CONNECT with generated authorities: a paid host or a refusal, nothing else",
    async () => {
      await fc.assert(
        fc.asyncProperty(authority(), fc.boolean(), async (auth, viaConnect) => {
          const before = snapshot();
          let x: Exchange;
          if (viaConnect) {
            const s = await connect(proxyPort());
            x = await talk(
              s,
              bytesOf(
                `CONNECT ${auth} HTTP/1.1\r\nHost: ${auth}\r\n\r\nGET /.well-known/stoka.json HTTP/1.1\r\nHost: ${auth}\r\nConnection: close\r\n\r\n`,
              ),
            );
            // The tunnel's own "200 Connection Established" is not an answer to a request.
            x = { ...x, heads: x.heads.filter((h) => h.reason !== "Connection Established") };
          } else {
            x = await direct(requestBytes("GET", `http://${auth}/.well-known/stoka.json`, auth));
          }
          expectAnswersSafe(x, 0);
          expectPeersSafe(before, 1);
        }),
        timed(BUDGET.authority),
      );
      await settle();
      await expectHealthy();
    },
    slack(BUDGET.authority),
  );
});

describe("Host and authority mismatches", () => {
  it.each([
    [
      "absolute-form to the paid host, Host: the decoy",
      () => requestBytes("POST", `http://${PAID}/v1/store`, DECOY),
    ],
    [
      "absolute-form to the paid host, Host: the other host",
      () => requestBytes("POST", `http://${PAID}/v1/store`, OTHER),
    ],
    ["origin-form (gateway), Host: the decoy", () => requestBytes("POST", "/v1/store", DECOY)],
    ["origin-form (gateway), Host: the other host", () => requestBytes("POST", "/v1/store", OTHER)],
    [
      "absolute-form to the other host (egress denied)",
      () => requestBytes("GET", `http://${OTHER}/x`, OTHER),
    ],
  ])("%s: nothing reaches them", async (_name, make) => {
    const before = snapshot();
    const x = await direct(make());
    expectAnswersSafe(x);
    expectPeersSafe(before, 1);
  });

  it.each([
    ["plain", false, `http://${DECOY}/v1/store`],
    ["plain", false, `http://${OTHER}/v1/store`],
    ["plain", false, `http://${PAID}:443/v1/store`],
    ["plain", false, `https://${PAID}:80/v1/store`],
    ["TLS", true, `https://${DECOY}/v1/store`],
    ["TLS", true, `https://${OTHER_TLS}/v1/store`],
    ["TLS", true, `http://${PAID}:443/v1/store`],
  ])(
    "%s tunnel to the paid host, inner absolute-form %s: 400, nothing reaches them",
    async (_kind, secure, target) => {
      const before = snapshot();
      const authority = `${PAID}:${secure ? 443 : 80}`;
      const x = await throughTunnel(authority, requestBytes("POST", target, DECOY), secure);
      expectAnswersSafe(x);
      expect(x.heads.at(-1)?.headers["x-stoka-proxy-error"]).toBe("bad_request");
      expectPeersSafe(before, 1);
      expect(emulatorRequests()).toBe(before.emulator);
    },
  );

  it(
    "generated Host headers inside tunnels and on absolute-form: the target's authority wins",
    async () => {
      await fc.assert(
        fc.asyncProperty(hostHeader(), fc.constantFrom("direct", "plain", "tls"), async (host, how) => {
          const before = snapshot();
          const bytes = requestBytes("GET", "/.well-known/stoka.json", host);
          const x =
            how === "direct"
              ? await direct(requestBytes("GET", `http://${PAID}/.well-known/stoka.json`, host))
              : await throughTunnel(`${PAID}:${how === "tls" ? 443 : 80}`, bytes, how === "tls");
          expectAnswersSafe(x);
          expectPeersSafe(before, 1);
        }),
        timed(BUDGET.host),
      );
      await settle();
    },
    slack(BUDGET.host),
  );
});

describe("smuggling shapes", () => {
  /** The request that would be smuggled: a paid request to the decoy. It must never arrive. */
  const smuggled = () =>
    `POST http://${DECOY}/v1/store HTTP/1.1\r\nHost: ${DECOY}\r\nX-Stoka-Key: smuggled\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`;

  /** Header lines (and body) that make a request's framing ambiguous: each alone is refused. */
  const POISON: [string, string][] = [
    ["CL + TE", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"],
    ["TE + CL", "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n"],
    ["two Content-Lengths", "Content-Length: 1\r\nContent-Length: 2\r\n"],
    ["the same Content-Length twice", "Content-Length: 1\r\nContent-Length: 1\r\n"],
    ["a Content-Length list", "Content-Length: 1, 1\r\n"],
    ["a signed Content-Length", "Content-Length: +1\r\n"],
    ["TE chunked, identity", "Transfer-Encoding: chunked, identity\r\n"],
    ["TE identity", "Transfer-Encoding: identity\r\n"],
    ["TE xchunked", "Transfer-Encoding: xchunked\r\n"],
    ["TE twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"],
    ["TE with a space before the colon", "Transfer-Encoding : chunked\r\n"],
    ["TE gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n"],
    ["obs-fold", "X-A: b\r\n folded\r\n"],
    ["a bare LF", "X-A: b\nX-B: c\r\n"],
    ["a bare CR", "X-A: b\rX-B: c\r\n"],
    ["a NUL", "X-A: b\u0000c\r\n"],
    ["two Hosts", `Host: ${DECOY}\r\n`],
    ["an Expect the proxy does not meet", "Expect: 200-ok\r\n"],
  ];
  /** Lines that are fine on their own and may ride along. */
  const BENIGN = [
    "Expect: 100-continue\r\n",
    "X-Stoka-Key: smuggle\r\n",
    "Accept: */*\r\n",
    "Connection: keep-alive\r\n",
  ];

  const head = (lines: string, body: string) =>
    `POST http://${PAID}/v1/store HTTP/1.1\r\nHost: ${PAID}\r\n${lines}\r\n${body}`;

  it.each(POISON)(
    "%s, then a pipelined request to the decoy: refused, the decoy sees nothing",
    async (_n, lines) => {
      const before = snapshot();
      const body = lines.includes("chunked") ? "1\r\nx\r\n0\r\n\r\n" : "x";
      const x = await direct(head(lines, body) + smuggled());
      expectAnswersSafe(x);
      expect(x.heads.at(-1)?.status).toBeGreaterThanOrEqual(400);
      expectPeersSafe(before, 2);
      expect(w.signCalls()).toBe(before.signs);
      expect(emulatorRequests()).toBe(before.emulator);
    },
  );

  it(
    "generated combinations: a poisoned request is refused and nothing after it is read",
    async () => {
      const poison = fc.constantFrom(...POISON.map(([, l]) => l));
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(poison, fc.constantFrom(...BENIGN)), { maxLength: 4 }),
          poison,
          fc.nat(),
          fc.constantFrom(
            "",
            "x",
            "1\r\nx\r\n0\r\n\r\n",
            "0\r\n\r\n",
            `0\r\n\r\n${smuggled()}`,
            "zz\r\nx\r\n0\r\n\r\n",
          ),
          fc.boolean(),
          async (mixed, certain, at, body, tunnelled) => {
            const lines = [...mixed];
            lines.splice(at % (mixed.length + 1), 0, certain);
            const before = snapshot();
            const bytes = head(lines.join(""), body) + smuggled();
            const x = tunnelled ? await throughTunnel(`${PAID}:80`, bytes, false) : await direct(bytes);
            expectAnswersSafe(x);
            expect(x.heads.at(-1)?.headers["x-stoka-proxy-error"]).toBeDefined();
            expectPeersSafe(before, 2);
            expect(w.signCalls()).toBe(before.signs);
            expect(emulatorRequests()).toBe(before.emulator);
          },
        ),
        timed(BUDGET.smuggle),
      );
      await settle();
      await expectHealthy();
    },
    slack(BUDGET.smuggle),
  );

  it("a pipelined pair of paid requests on one connection: each paid exactly once", async () => {
    const before = snapshot();
    const charged = w.charged();
    const one = (k: string, close: boolean) =>
      `POST http://${PAID}/v1/store HTTP/1.1\r\nHost: ${PAID}\r\nX-Stoka-Key: ${k}\r\nContent-Length: 42\r\n${close ? "Connection: close\r\n" : ""}\r\n${"p".repeat(42)}`;
    const x = await direct(one(`pipe-a-${Date.now()}`, false) + one(`pipe-b-${Date.now()}`, true));
    expectAnswersSafe(x, 2);
    expect(x.heads.map((h) => [h.status, h.headers["x-stoka-proxy-paid"]])).toEqual([
      [201, "1400"],
      [201, "1400"],
    ]);
    expect(w.signCalls() - before.signs).toBe(2);
    expect(w.charged() - charged).toBe(2800n);
  });

  it("Expect: 100-continue on a paid request: one payment, one answer after the 100", async () => {
    const before = snapshot();
    const x = await direct(
      `POST http://${PAID}/v1/store HTTP/1.1\r\nHost: ${PAID}\r\nX-Stoka-Key: expect-${Date.now()}\r\nExpect: 100-continue\r\nContent-Length: 42\r\nConnection: close\r\n\r\n${"e".repeat(42)}`,
    );
    expect(x.heads.map((h) => h.status)).toEqual([100, 201]);
    expectAnswersSafe(x);
    expect(w.signCalls() - before.signs).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Generated 402s and receipts from a hostile paid host.

/** The requirement the proxy pays: every pinned term right. */
function payable(price = "1000"): Record<string, unknown> {
  return {
    scheme: "exact",
    network: w.config.network,
    asset: w.config.asset,
    payTo: w.sandbox.payTo,
    amount: price,
    maxTimeoutSeconds: 120,
    extra: { areFeesSponsored: true },
  };
}
const body402 = (accepts: unknown, version: unknown = 2) => ({ x402Version: version, accepts });
const challenge = (body: string, headers: Record<string, string> = {}): HostileAnswer => ({
  status: 402,
  headers: { "content-type": "application/json", ...headers },
  body,
});

/** One field of a requirement: a value (or none), and whether the proxy may pay with it. */
type Field = { value: unknown; ok: boolean } | { absent: true; ok: boolean };
const good = (value: unknown): Field => ({ value, ok: true });
const bad = (value: unknown): Field => ({ value, ok: false });
const missing = (ok: boolean): Field => ({ absent: true, ok });

/**
 * A generated requirement and the test's own verdict on it: `usable` when every pinned term but
 * the price cap passes (scheme, network, asset, payee, timeout bounds, sponsored fees, a
 * well-formed positive price), `price` its price then.
 */
interface GenRequirement {
  value: Record<string, unknown>;
  usable: boolean;
  price: bigint;
}

const CAP = 500_000n;
const FOREIGN_PAYEE = "GAPRO7H3JNM4LVR33IDR5PYNQ35TJJXWJW65HU267RIPJIUUGEPWCAXB";
const deep = (n: number) => JSON.parse(`${"[".repeat(n)}${"]".repeat(n)}`) as unknown;

function requirementArb(): fc.Arbitrary<GenRequirement> {
  const fields = {
    scheme: fc.oneof(
      { weight: 6, arbitrary: fc.constant(good("exact")) },
      fc.constantFrom(bad("EXACT"), bad("upto"), bad(1), bad(null), missing(false), bad(["exact"])),
    ),
    network: fc.oneof(
      { weight: 6, arbitrary: fc.constant(good(w.config.network)) },
      fc.constantFrom(bad("stellar:pubnet"), bad(`${w.config.network} `), bad(5), missing(false), bad({})),
    ),
    asset: fc.oneof(
      { weight: 6, arbitrary: fc.constant(good(w.config.asset)) },
      fc.constantFrom(
        bad("CCW67TSZV3SSS2HXMBQ5JFGCKJNXKZM7UQUWUZPUTHXSTZLEO7SJMI75"),
        bad(w.config.asset.toLowerCase()),
        missing(false),
        bad(0),
      ),
    ),
    payTo: fc.oneof(
      { weight: 6, arbitrary: fc.constant(good(w.sandbox.payTo)) },
      fc.constantFrom(
        bad(FOREIGN_PAYEE),
        bad(w.sandbox.payTo.toLowerCase()),
        missing(false),
        bad(null),
        bad(["G"]),
      ),
    ),
    maxTimeoutSeconds: fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 10, max: 600 }).map(good) },
      fc.constantFrom(
        good(120.5), // inside the bounds: a fraction of a second changes nothing that matters
        bad(0),
        bad(9),
        bad(601),
        bad(-1),
        bad(1e308),
        bad("120"),
        bad(null),
        missing(false),
      ),
    ),
    extra: fc.oneof(
      {
        weight: 6,
        arbitrary: fc.jsonValue({ maxDepth: 2 }).map((junk) => good({ areFeesSponsored: true, junk })),
      },
      fc.constantFrom(
        bad({ areFeesSponsored: "true" }),
        bad({ areFeesSponsored: false }),
        bad({}),
        bad([true]),
        bad(null),
        missing(false),
      ),
    ),
  };
  const fine = fc.integer({ min: 1, max: 2000 }).map(String);
  const malformed = fc.constantFrom("-1", "1.5", "1e3", "0", "", " 100", "100 ", "0x10", "1".repeat(31));
  const aboveCap = fc.constantFrom("500001", "9".repeat(30));
  // The price: `amount` when the key is there (then it alone decides), else `maxAmountRequired`.
  type Price = { amount: Field; max: Field; price: bigint };
  const price: fc.Arbitrary<Price> = fc.oneof(
    { weight: 5, arbitrary: fine.map((p) => ({ amount: good(p), max: missing(true), price: BigInt(p) })) },
    { weight: 2, arbitrary: fine.map((p) => ({ amount: missing(true), max: good(p), price: BigInt(p) })) },
    {
      weight: 1,
      arbitrary: aboveCap.map((p) => ({ amount: good(p), max: missing(true), price: BigInt(p) })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(malformed, fine).map(([b, p]) => ({ amount: bad(b), max: good(p), price: 0n })),
    },
    { weight: 1, arbitrary: malformed.map((b) => ({ amount: missing(true), max: bad(b), price: 0n })) },
    { weight: 1, arbitrary: fine.map((p) => ({ amount: bad(Number(p)), max: missing(true), price: 0n })) },
    { weight: 1, arbitrary: fc.constant({ amount: missing(true), max: missing(false), price: 0n }) },
  );
  const junk = fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 });
  return fc.record({ ...fields, price, junk }).map((g) => {
    const value: Record<string, unknown> = {};
    let usable = true;
    const put = (key: string, f: Field) => {
      usable &&= f.ok;
      if (!("absent" in f)) value[key] = f.value;
    };
    for (const key of Object.keys(fields) as (keyof typeof fields)[]) put(key, g[key]);
    put("amount", g.price.amount);
    put("maxAmountRequired", g.price.max);
    // Unknown fields ride along (and must be echoed); they never replace a known one.
    for (const [k, v] of Object.entries(g.junk))
      if (!(k in fields) && k !== "amount" && k !== "maxAmountRequired") value[k] = v;
    return { value, usable, price: g.price.price };
  });
}

/** A whole 402: requirements, where they travel, how they are encoded; and whether it is payable. */
interface GenChallenge {
  answer: HostileAnswer;
  payable: boolean;
  /** The price of the requirement the proxy must choose, when it is payable. */
  price: bigint | undefined;
  label: string;
}

/**
 * The verdict on a list of requirements: the first one that passes the terms is chosen, and the
 * per-request cap then applies to it (a dearer first choice is refused, not skipped).
 */
const listPrice = (list: readonly GenRequirement[]): bigint | undefined => {
  const chosen = list.find((r) => r.usable);
  return chosen !== undefined && chosen.price <= CAP ? chosen.price : undefined;
};

function challengeArb(where: "body" | "header"): fc.Arbitrary<GenChallenge> {
  return fc
    .record({
      accepts: fc.array(requirementArb(), { maxLength: 6 }),
      // Many accepts nobody may be paid, ahead of the generated ones.
      padding: fc.oneof(
        { weight: 9, arbitrary: fc.constant(0) },
        {
          weight: 1,
          arbitrary: where === "body" ? fc.integer({ min: 100, max: 1500 }) : fc.integer({ max: 20, min: 1 }),
        },
      ),
      // Body form: x402Version 1 or 2. Header form: 2, or absent.
      version:
        where === "body"
          ? fc.oneof(
              { weight: 6, arbitrary: fc.constantFrom(good(2), good(1)) },
              fc.constantFrom(bad(3), bad("2"), bad(null), missing(false)),
            )
          : fc.oneof(
              { weight: 6, arbitrary: fc.constantFrom(good(2), missing(true)) },
              fc.constantFrom(bad(1), bad(3), bad("2"), bad(null)),
            ),
      nesting: fc.constantFrom(0, 0, 0, 4, 60, 2000),
      acceptsShape: fc.oneof(
        { weight: 9, arbitrary: fc.constant("list") },
        fc.constantFrom("object", "string", "null"),
      ),
      encoding: fc.oneof(
        { weight: 6, arbitrary: fc.constant("base64") },
        fc.constantFrom("base64url", "unpadded", "spaced", "not-base64"),
      ),
      rootJunk: fc.dictionary(
        fc.constantFrom("error", "resource", "extensions", "x", "proxy"),
        fc.jsonValue({ maxDepth: 2 }),
        { maxKeys: 2 },
      ),
    })
    .map((g): GenChallenge => {
      const padding = Array.from({ length: g.padding }, () => ({ ...payable(), payTo: FOREIGN_PAYEE }));
      const list = [...padding, ...g.accepts.map((a) => a.value)];
      const accepts =
        g.acceptsShape === "list"
          ? list
          : g.acceptsShape === "object"
            ? { ...list }
            : g.acceptsShape === "string"
              ? JSON.stringify(list)
              : null;
      const root: Record<string, unknown> = { ...g.rootJunk };
      if (!("absent" in g.version)) root.x402Version = g.version.value;
      root.accepts = accepts;
      if (g.nesting > 0) root.deep = deep(g.nesting);
      const text = JSON.stringify(root);
      const shapeOk = g.version.ok && g.acceptsShape === "list" && g.nesting < 30;
      const price = listPrice(g.accepts);
      const payableList = price !== undefined;
      const label = `${where} ${g.encoding} ${text.slice(0, 300)}`;
      if (where === "body") {
        const fits = Buffer.byteLength(text) <= 256 * 1024;
        const payable = shapeOk && fits && payableList;
        return { answer: challenge(text), payable, price: payable ? price : undefined, label };
      }
      const std = Buffer.from(text).toString("base64");
      const encoded = {
        base64: std,
        base64url: Buffer.from(text).toString("base64url"),
        unpadded: std.replace(/=+$/, ""),
        spaced: `${std.slice(0, 8)} ${std.slice(8)}`,
        "not-base64": `!${std}`,
      }[g.encoding] as string;
      // A variant that comes out the same as standard padded base64 is standard base64.
      const readable = encoded === std && shapeOk;
      // The body is payable on its own: the header form must be judged by its header alone.
      return {
        answer: challenge(JSON.stringify(body402([payable()])), { "payment-required": encoded }),
        payable: readable && payableList,
        price: readable ? price : undefined,
        label,
      };
    })
    .filter((c) => Buffer.byteLength(c.answer.headers?.["payment-required"] ?? "") < 12_000);
}

/** What the hostile host answers to the paid retry: the truth, lies about receipts, or worse. */
const RETRY_ANSWERS: [string, () => HostileAnswer][] = [
  [
    "200 with a receipt",
    () => ({ status: 200, headers: { "x-payment-response": receipt(true) }, body: "ok" }),
  ],
  [
    "200 with a receipt for another tx",
    () => ({ status: 200, headers: { "payment-response": receipt(true) }, body: "ok" }),
  ],
  [
    "200 with a failed receipt",
    () => ({ status: 200, headers: { "x-payment-response": receipt(false) }, body: "ok" }),
  ],
  [
    "200 with a garbage receipt",
    () => ({ status: 200, headers: { "x-payment-response": "!!not-base64" }, body: "ok" }),
  ],
  ["201 without a receipt", () => ({ status: 201, body: "{}" })],
  ["402 again", () => challenge(JSON.stringify({ ...body402([payable()]), error: "insufficient funds" }))],
  [
    "402 again, claiming success",
    () => ({ ...challenge("{}"), headers: { "x-payment-response": receipt(true) } }),
  ],
  ["302 to the other host", () => ({ status: 302, headers: { location: `http://${OTHER}/steal` } })],
  ["500", () => ({ status: 500, body: "oops" })],
  ["404", () => ({ status: 404, body: "no" })],
  ["a reset after the head", () => ({ status: 200, body: "0123456789", resetAfterBytes: 2 })],
  ["status 000", () => ({ status: 0, raw: "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n" })],
];

function receipt(success: boolean): string {
  const tx = Array.from({ length: 64 }, () => "0123456789abcdef"[Math.floor(Math.random() * 16)]).join("");
  return encodeBase64Json({
    success,
    transaction: tx,
    network: "stellar:testnet",
    payer: "G".padEnd(56, "A"),
  });
}

describe("402s and receipts from a hostile paid host", () => {
  /** Headers only the proxy may write, sent by the hostile host on every answer. */
  const FORGED = {
    "x-stoka-proxy-paid": "1",
    "x-stoka-proxy-tx": "f".repeat(64),
    "x-stoka-proxy-error": "no_budget",
  };
  const forge = (a: HostileAnswer): HostileAnswer =>
    a.raw === undefined ? { ...a, headers: { ...FORGED, ...a.headers } } : a;

  const run = (where: "body" | "header", budget: number) =>
    fc.assert(
      fc.asyncProperty(
        challengeArb(where),
        fc.constantFrom(...RETRY_ANSWERS),
        fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
        async (c, [, retry], cut) => {
          hostile.received.length = 0;
          // The 402 arrives whole, or is cut in the middle of its body.
          const first = cut ? { ...c.answer, resetAfterBytes: 10 } : c.answer;
          hostile.script = (r) =>
            forge(
              r.headers["x-payment"] !== undefined || r.headers["payment-signature"] !== undefined
                ? retry()
                : first,
            );
          const before = snapshot();
          const x = await direct(requestBytes("POST", `http://${HOSTILE}/v1/store`, HOSTILE));
          expectAnswersSafe(x);
          expectPeersSafe(before, 1);
          const payable = c.payable && !cut;
          // The signer runs exactly for a well-formed challenge that passes the pinned terms.
          expect(w.signCalls() - before.signs, c.label).toBe(payable ? 1 : 0);
          expect(hostile.paidRequests(), c.label).toBe(payable ? 1 : 0);
          const last = x.heads.at(-1);
          // What the app is told it paid is the proxy's figure, never the upstream's.
          expect(last?.headers["x-stoka-proxy-tx"]).not.toBe(FORGED["x-stoka-proxy-tx"]);
          if (last?.headers["x-stoka-proxy-paid"] !== undefined)
            expect(last.headers["x-stoka-proxy-paid"], c.label).toBe(String(c.price));
          if (!payable) {
            expect(last?.headers["x-stoka-proxy-paid"]).toBeUndefined();
            const expected = cut
              ? ["upstream_unreachable"]
              : ["challenge_unreadable", "terms_rejected", "price_above_cap"];
            expect(expected, c.label).toContain(last?.headers["x-stoka-proxy-error"]);
          }
        },
      ),
      timed(budget),
    );

  it(
    "generated 402 bodies (stoka and x402 v1 forms)",
    async () => {
      try {
        await run("body", CHALLENGE_BUDGET.body);
        await settle();
      } finally {
        hostile.script = undefined;
      }
      await expectHealthy();
    },
    slack(CHALLENGE_BUDGET.body),
  );

  it(
    "generated PAYMENT-REQUIRED headers (x402 v2 form, encodings varied)",
    async () => {
      try {
        await run("header", CHALLENGE_BUDGET.header);
        await settle();
      } finally {
        hostile.script = undefined;
      }
      await expectHealthy();
    },
    slack(CHALLENGE_BUDGET.header),
  );

  it.each<[string, HostileAnswer]>([
    ["status 000", { status: 0, raw: "HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n" }],
    ["status 099", { status: 0, raw: "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n" }],
    [
      "a control byte in the reason",
      { status: 0, raw: "HTTP/1.1 402 P\u0001R\r\nContent-Length: 0\r\n\r\n" },
    ],
    ["not HTTP", { status: 0, raw: "SSH-2.0-OpenSSH\r\n\r\n" }],
    [
      "a 402 body that stalls",
      { ...challenge(JSON.stringify(body402([{ amount: "1" }]))), stallAfterBytes: 5 },
    ],
  ])("the first answer is %s: a coded 5xx or 402, nothing signed", async (_name, answer) => {
    hostile.script = () => answer;
    try {
      const before = snapshot();
      const x = await direct(requestBytes("POST", `http://${HOSTILE}/v1/store`, HOSTILE));
      expectAnswersSafe(x);
      expectPeersSafe(before, 1);
      expect(w.signCalls()).toBe(before.signs);
      expect(x.heads.at(-1)?.headers["x-stoka-proxy-error"]).toBeDefined();
    } finally {
      hostile.script = undefined;
    }
  });

  it(
    "generated wallet-auth challenges: signed only when usable, never a 32-byte message, sent only to that host",
    async () => {
      const message = fc.oneof(
        fc.string({ maxLength: 80 }),
        fc.string({ unit: "binary", minLength: 8, maxLength: 32 }),
        fc.constantFrom("A".repeat(32), "é".repeat(16), "\u{1F642}".repeat(8), "stoka-auth:delete:abc:1"),
      );
      const answer = fc.oneof(
        { weight: 6, arbitrary: fc.record({ challenge_id: fc.string({ maxLength: 20 }), message }) },
        fc.record({ challenge_id: fc.jsonValue({ maxDepth: 1 }), message: fc.jsonValue({ maxDepth: 1 }) }),
        fc.jsonValue({ maxDepth: 3 }),
      );
      await fc.assert(
        fc.asyncProperty(answer, fc.constantFrom(200, 200, 200, 201, 400, 401, 500), async (body, status) => {
          hostile.received.length = 0;
          hostile.script = (r) =>
            r.url === "/v1/auth/challenge"
              ? { status, headers: { "content-type": "application/json" }, body: JSON.stringify(body) }
              : { status: 204 };
          const before = snapshot();
          const x = await direct(requestBytes("DELETE", `http://${HOSTILE}/v1/object/k`, HOSTILE, ""));
          expectAnswersSafe(x);
          expectPeersSafe(before, 1);
          const b = body as { challenge_id?: unknown; message?: unknown } | null;
          const usable =
            status === 200 &&
            typeof b === "object" &&
            b !== null &&
            !Array.isArray(b) &&
            typeof b.challenge_id === "string" &&
            typeof b.message === "string" &&
            Buffer.byteLength(b.message, "utf8") !== 32;
          const signed = messages.calls - before.messages;
          // A usable challenge is signed (twice when the signed request gets a 401: never here).
          expect(signed, JSON.stringify(body)).toBe(usable ? 1 : 0);
          const forwarded = hostile.received.filter((r) => r.url === "/v1/object/k");
          expect(forwarded.length).toBe(usable ? 1 : 0);
          for (const r of forwarded) expect(String(r.headers.authorization)).toMatch(/^Stellar G/);
          if (!usable) expect(x.heads.at(-1)?.headers["x-stoka-proxy-error"]).toBe("wallet_auth_failed");
        }),
        timed(BUDGET.walletAuth),
      );
      await settle();
      hostile.script = undefined;
      await expectHealthy();
    },
    slack(BUDGET.walletAuth),
  );

  it.each(RETRY_ANSWERS)("the paid retry answered %s: one payment, a stable answer", async (_name, retry) => {
    hostile.script = (r) =>
      r.headers["x-payment"] !== undefined ? retry() : challenge(JSON.stringify(body402([payable()])));
    try {
      const before = snapshot();
      const x = await direct(requestBytes("POST", `http://${HOSTILE}/v1/store`, HOSTILE));
      expectAnswersSafe(x);
      expectPeersSafe(before, 1);
      expect(w.signCalls() - before.signs).toBe(1);
      expect(hostile.paidRequests() - before.hostilePaid).toBe(1);
    } finally {
      hostile.script = undefined;
    }
  });
});

describe("bodies, budgets and what is left behind", () => {
  const store = (key: string, body: string, framing: "length" | "chunked" = "length") =>
    `POST http://${PAID}/v1/store HTTP/1.1\r\nHost: ${PAID}\r\nX-Stoka-Key: ${key}\r\n` +
    (framing === "length"
      ? `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`
      : `Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);

  it.each<[string, number, "length" | "chunked", number, string | undefined]>([
    ["exactly the cap", MAX_BODY, "length", 201, undefined],
    ["one byte over the cap", MAX_BODY + 1, "length", 413, "body_too_large"],
    ["one byte over the cap, chunked", MAX_BODY + 1, "chunked", 413, "body_too_large"],
    ["far over the cap", 20 * MAX_BODY, "length", 413, "body_too_large"],
  ])("a paid request with a body %s: %i", async (_name, size, framing, status, code) => {
    const before = snapshot();
    const x = await direct(store(`body-${size}-${framing}-${Date.now()}`, "b".repeat(size), framing));
    expectAnswersSafe(x);
    expectPeersSafe(before, 1);
    expect(x.heads.at(-1)?.status).toBe(status);
    expect(x.heads.at(-1)?.headers["x-stoka-proxy-error"]).toBe(code);
    expect(w.signCalls() - before.signs).toBe(code ? 0 : 1);
  });

  it("requests racing one budget: never more paid than the limit allows", async () => {
    await withProxyWorld(
      (c) => {
        c.budgets = [
          {
            name: "tight",
            match: {},
            limits: [{ period: { kind: "calendar", unit: "day" }, amount: 3000n }],
          },
        ];
      },
      async (world) => {
        const port = Number(new URL(world.proxyUrl).port);
        const answers = await Promise.all(
          Array.from({ length: 8 }, async (_, i) =>
            talk(await connect(port), store(`race-${i}`, "r".repeat(42)), 20_000),
          ),
        );
        const statuses = answers.map((a) => a.heads.at(-1)?.status);
        expect(statuses.filter((s) => s === 201)).toHaveLength(2); // 2 × 1400 fit in 3000
        expect(statuses.filter((s) => s === 402)).toHaveLength(6);
        expect(world.charged()).toBe(2800n);
        expect(world.signCalls()).toBe(2);
      },
    );
  }, 60_000);

  it("the logs never carry a payment header, a wallet signature or the seed; metric routes are names", async () => {
    await settle();
    // Traffic of every kind first (the properties above add much more): a payment, a
    // wallet-signed request and a refused one.
    await expectHealthy();
    expect(
      (
        await direct(
          `DELETE http://${PAID}/v1/object/gone HTTP/1.1\r\nHost: ${PAID}\r\nConnection: close\r\n\r\n`,
        )
      ).heads.at(-1)?.status,
    ).toBe(204);
    await direct(requestBytes("POST", `http://${PAID}/v1/store`, `${PAID}\r\nHost: ${DECOY}`));
    const logs = w.logs();
    const produced = w.signer()?.produced ?? [];
    expect(produced.length).toBeGreaterThan(0);
    for (const header of produced) expect(logs.includes(header.slice(0, 64))).toBe(false);
    expect(logs).not.toMatch(/Stellar G[A-Z2-7]{55}/);
    expect(logs).not.toContain(w.sandbox.wallet.secret());
    const metrics = await w.proxy.registry.metrics();
    const routes = new Set([...metrics.matchAll(/route="([^"]*)"/g)].map((m) => m[1]));
    for (const route of routes) expect(ROUTE_NAMES as readonly string[]).toContain(route);
  });
});
