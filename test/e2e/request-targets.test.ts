import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminServer } from "../../src/observability/admin.js";
import { issueLeafCertificate } from "../../src/tls/certificates.js";
import type { MessageSigner } from "../../src/wallet/message-signer.js";
import { curl } from "../support/clients.js";
import { startHostileUpstream } from "../support/hostile.js";
import type { HostileUpstream } from "../support/hostile.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { lastStatus, rawExchange } from "../support/raw-http.js";

/**
 * A request target must never name the host a request (its payment, its wallet signature) goes
 * to: `//other:port/x`, dot-segments that climb to `//`, userinfo, another authority inside a
 * tunnel. Each shape is refused with 400 before anything is sent; a hostile upstream that would
 * relay to the real stoka (and so could collect a payment or a signature) sees nothing.
 */
const BASE = "http://test.api.stoka.space";
const TLS_BASE = "https://test.api.stoka.space";

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
let hostile: HostileUpstream;
let messages: CountingMessageSigner;
let attacker: string;
let tlsAttacker: string;
beforeAll(async () => {
  w = await startProxyWorld((c) => {
    // A path-glob wallet-auth rule (as a deployment behind a path prefix would write it): the
    // shape that made the proxy sign for a request it then sent to another host.
    c.walletAuth = [
      {
        method: "DELETE",
        path: "**/v1/object/*",
        audience: "delete",
        alternativeAudience: "object-delete",
        replaceAuthorization: false,
      },
      ...c.walletAuth,
    ];
  });
  // The hostile host also speaks TLS with a certificate the proxy's upstream trust accepts.
  const leaf = await issueLeafCertificate(w.sandbox.ca, ["127.0.0.1", "test.api.stoka.space"]);
  hostile = await startHostileUpstream(w.sandbox.emulator.httpUrl, leaf);
  attacker = `127.0.0.1:${hostile.port}`;
  tlsAttacker = `127.0.0.1:${hostile.tlsPort ?? 0}`;
  const inner = w.proxy.ctx.messageSigner;
  if (!inner) throw new Error("the world has no message signer");
  messages = new CountingMessageSigner(inner);
  w.proxy.ctx.messageSigner = messages;
});
afterAll(async () => {
  await hostile.close();
  await w.close();
});

const proxyPort = () => Number(new URL(w.proxyUrl).port);

/** Runs `attack`, then checks that nothing reached the hostile host and nothing was spent or signed. */
async function expectRefused(attack: () => Promise<{ status: number; body: string }>) {
  hostile.seen.length = 0;
  const charged = w.charged();
  const signs = w.signCalls();
  const signed = messages.calls;
  const challenges = w.sandbox.emulator.state.requests.get("challenge") ?? 0;
  const { status, body } = await attack();
  expect(hostile.seen.map((s) => `${s.method} ${s.target}`)).toEqual([]);
  expect(hostile.secrets()).toEqual([]);
  expect(w.charged()).toBe(charged);
  expect(w.signCalls()).toBe(signs);
  expect(messages.calls).toBe(signed);
  expect(w.sandbox.emulator.state.requests.get("challenge") ?? 0).toBe(challenges);
  expect(status, body).toBe(400);
  expect(body).toMatch(/bad_request/);
}

const viaCurl = async (args: Parameters<typeof curl>[0]) => {
  const r = await curl(args);
  return { status: r.status, body: r.body.toString() };
};
const viaRaw = async (chunks: string[]) => {
  const text = await rawExchange(proxyPort(), chunks);
  return { status: lastStatus(text), body: text };
};

const store = { method: "POST", headers: { "X-Stoka-Key": "k" }, body: Buffer.from("x") };

describe("a path that starts with // never sends the request to another host", () => {
  it("forward (absolute-form): 400, the hostile host sees nothing", async () => {
    await expectRefused(() =>
      viaCurl({ ...store, proxy: w.proxyUrl, url: `${BASE}//${attacker}/v1/store`, extra: ["--path-as-is"] }),
    );
  });

  it("forward with dot-segments that climb to // : 400", async () => {
    await expectRefused(() =>
      viaCurl({
        ...store,
        proxy: w.proxyUrl,
        url: `${BASE}/x/..//${attacker}/v1/store`,
        extra: ["--path-as-is"],
      }),
    );
  });

  it("gateway (origin-form /.//host:port/…): 400", async () => {
    await expectRefused(() =>
      viaCurl({ ...store, url: `${w.proxyUrl}/.//${attacker}/v1/store`, extra: ["--path-as-is"] }),
    );
  });

  it("gateway (origin-form //host:port/…): 400", async () => {
    await expectRefused(() =>
      viaCurl({ ...store, url: `${w.proxyUrl}//${attacker}/v1/store`, extra: ["--path-as-is"] }),
    );
  });

  it("plain HTTP inside CONNECT :80 (curl --proxytunnel): 400", async () => {
    await expectRefused(() =>
      viaCurl({
        ...store,
        proxy: w.proxyUrl,
        url: `http://test.api.stoka.space:80//${attacker}/v1/store`,
        extra: ["--path-as-is", "--proxytunnel"],
      }),
    );
  });

  it("TLS-intercepted tunnel: 400", async () => {
    await expectRefused(() =>
      viaCurl({
        ...store,
        proxy: w.proxyUrl,
        url: `${TLS_BASE}//${tlsAttacker}/v1/store`,
        extra: ["--path-as-is", "--cacert", w.config.tls.caCertFile ?? ""],
      }),
    );
  });

  it("wallet-auth route (DELETE /v1/object/…): 400, no challenge fetched, nothing signed", async () => {
    await expectRefused(() =>
      viaCurl({
        method: "DELETE",
        proxy: w.proxyUrl,
        url: `${BASE}//${attacker}/v1/object/victim-key`,
        extra: ["--path-as-is"],
      }),
    );
  });

  it("absolute-form inside a tunnel that names another authority: 400", async () => {
    await expectRefused(() =>
      viaRaw([
        "CONNECT test.api.stoka.space:80 HTTP/1.1\r\nHost: test.api.stoka.space:80\r\n\r\n",
        `POST http://${attacker}/v1/store HTTP/1.1\r\nHost: ${attacker}\r\nX-Stoka-Key: k\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`,
      ]),
    );
  });

  it("absolute-form with userinfo (http://paid-host@other/…): 400", async () => {
    await expectRefused(() =>
      viaRaw([
        `POST http://test.api.stoka.space@${attacker}/v1/store HTTP/1.1\r\nHost: test.api.stoka.space\r\nX-Stoka-Key: k\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`,
      ]),
    );
  });

  it.each([
    ["a backslash", "/v1\\store"],
    ["a fragment", "/v1/store#x"],
    ["a percent-encoded dot-segment", "/v1/%2e%2e/v1/store"],
    ["no leading slash (asterisk-form)", "*"],
  ])("origin-form with %s: 400", async (_name, target) => {
    await expectRefused(() =>
      viaRaw([
        `POST ${target} HTTP/1.1\r\nHost: x\r\nX-Stoka-Key: k\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx`,
      ]),
    );
  });

  it("a CONNECT target that is not a plain host:port: 400", async () => {
    for (const target of [`user@${attacker}`, `test.api.stoka.space/x:443`, `[::1:443`]) {
      const text = await rawExchange(proxyPort(), [`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`]);
      expect(lastStatus(text), target).toBe(400);
    }
    expect(hostile.seen).toEqual([]);
  });
});

describe("keys with / keep working", () => {
  it("percent-encoded and plain / in a key are sent as a path, and paid", async () => {
    hostile.seen.length = 0;
    for (const [stored, path] of [
      ["tgt-a/b", "tgt-a%2Fb"],
      ["tgt-dir/sub/key", "tgt-dir/sub/key"],
    ] as const) {
      const before = w.charged();
      const created = await curl({
        proxy: w.proxyUrl,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": stored },
        body: Buffer.from("hello"),
      });
      expect(created.status).toBe(201);
      const got = await curl({ proxy: w.proxyUrl, method: "GET", url: `${BASE}/v1/retrieve/${path}` });
      expect(got.status, path).toBe(200);
      expect(got.body.toString()).toBe("hello");
      expect(got.headers["x-stoka-proxy-paid"]).toBeDefined();
      expect(w.charged()).toBeGreaterThan(before);
    }
    expect(hostile.seen).toEqual([]);
  });
});

describe("the egress policy cannot be skipped with //127.0.0.1:PORT/", () => {
  it("the admin listener's metrics are never served through the proxy (deny_private on)", async () => {
    const world = await startProxyWorld((c) => (c.egress.denyPrivate = true));
    const admin = new AdminServer({ host: "127.0.0.1", port: 0 }, world.proxy.registry);
    await admin.listen();
    const adminPort = Number(new URL(admin.url).port);
    try {
      for (const [url, extra] of [
        [`${BASE}//127.0.0.1:${adminPort}/metrics`, ["--path-as-is"]],
        [`http://allowed.example//127.0.0.1:${adminPort}/metrics`, ["--path-as-is"]],
        [`http://test.api.stoka.space:80//127.0.0.1:${adminPort}/metrics`, ["--path-as-is", "--proxytunnel"]],
        [`http://127.0.0.1:${adminPort}/metrics`, []],
        [`http://127.1:${adminPort}/metrics`, []],
      ] as const) {
        const r = await curl({ proxy: world.proxyUrl, method: "GET", url, extra: [...extra] });
        expect([400, 403], url).toContain(r.status);
        expect(r.body.toString(), url).not.toMatch(/stoka_proxy_|process_cpu/);
      }
    } finally {
      await admin.close();
      await world.close();
    }
  });
});

describe("loops to the proxy itself", () => {
  it.each(["127.0.0.1", "127.1", "localhost.", "LOCALHOST"])(
    "http://%s:<proxy port>/ is a loop",
    async (host) => {
      const r = await curl({
        proxy: w.proxyUrl,
        method: "GET",
        url: `http://${host}:${proxyPort()}/.well-known/stoka.json`,
      });
      expect(r.status).toBe(508);
      expect(r.headers["x-stoka-proxy-error"]).toBe("loop_detected");
    },
  );
});
