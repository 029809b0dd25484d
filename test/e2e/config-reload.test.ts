import { readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { Ledger } from "../../src/ledger/ledger.js";
import { hashToken } from "../../src/proxy/client-identity.js";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { curl } from "../support/clients.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { closedWithin, connect, openTunnel, readUntilClosed, until } from "../support/sockets.js";

/**
 * A real `stoka-proxy start` process: client tokens decide who is served (407 forward, 401
 * gateway) and a served payment is the client's in the ledger, the metrics and the log; SIGHUP
 * and `POST /admin/reload` apply a new configuration to the next request without a restart
 * (docs/operations.md, Reloading the configuration), and refuse a broken one.
 */
const BASE = "http://test.api.stoka.space";
const BODY = Buffer.from("r".repeat(42));
const TOKEN_A = "reload-token-of-team-a";
const TOKEN_B = "reload-token-of-team-b";
const TOKEN_C = "reload-token-of-team-c";
const ADMIN_TOKEN = "admin-token-for-the-reload-test";

let sb: Sandbox;
let p: ProxyProcess;
let base: Record<string, unknown>;

const clients = (...c: [string, string][]) =>
  c.map(([name, token]) => ({ name, token_sha256: hashToken(token) }));

beforeAll(async () => {
  sb = await startSandbox();
  const { configPath, dataDir } = writeProxyConfig(sb, {
    clients: clients(["team-a", TOKEN_A], ["team-b", TOKEN_B]),
    budgets: [{ name: "day", limits: { day: "1 USDC" } }],
  });
  base = parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
  p = await startProxyProcess(sb, configPath, dataDir, { env: { STOKA_PROXY_ADMIN_TOKEN: ADMIN_TOKEN } });
}, 60_000);
afterAll(async () => {
  await p?.stop();
  await sb?.close();
});

const rewrite = (over: Record<string, unknown>) =>
  writeFileSync(p.configPath, stringify({ ...base, ...over }));
const proxyAs = (user: string, token: string) => p.url.replace("http://", `http://${user}:${token}@`);
const store = (proxy: string, key: string) =>
  curl({ proxy, method: "POST", url: `${BASE}/v1/store`, headers: { "X-Stoka-Key": key }, body: BODY });
const gatewayStore = (key: string, authorization?: string) =>
  curl({
    method: "POST",
    url: `${p.url}/v1/store`,
    headers: { "X-Stoka-Key": key, ...(authorization ? { Authorization: authorization } : {}) },
    body: BODY,
  });
const logLines = (msg: RegExp) =>
  p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => msg.test(String(l.msg)));
const metrics = async () => (await fetch(`${p.adminUrl}/metrics`)).text();
const ledger = () => {
  const db = openDatabase(join(p.dataDir, "stoka-proxy.db"));
  const rows = new Ledger(db).latest();
  db.close();
  return rows;
};
const reload = (token?: string) =>
  fetch(`${p.adminUrl}/admin/reload`, {
    method: "POST",
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });

async function requestLine(requestId: unknown): Promise<Record<string, unknown> | undefined> {
  const find = () => logLines(/^request$/).find((l) => l.request_id === requestId);
  await until(() => find() !== undefined, 5000);
  return find();
}

/** A CONNECT tunnel to the paid host on port 80 (plain HTTP inside), opened with `token`. */
async function tunnelAs(token: string) {
  const s = await connect(Number(new URL(p.url).port));
  s.write(
    `CONNECT test.api.stoka.space:80 HTTP/1.1\r\nHost: test.api.stoka.space:80\r\nProxy-Authorization: Bearer ${token}\r\n\r\n`,
  );
  let got = "";
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      got += c.toString("latin1");
      if (!got.includes("\r\n\r\n")) return;
      s.off("data", onData);
      s.pause();
      if (/^HTTP\/1\.1 200/.test(got)) resolve();
      else reject(new Error(`CONNECT refused: ${got.split("\r\n")[0]}`));
    };
    s.on("data", onData);
  });
  return s;
}

/** Sends SIGHUP and waits for the reload's log line (applied or refused). */
async function hangUp(): Promise<void> {
  const before = logLines(/^configuration reload/).length;
  p.child.kill("SIGHUP");
  expect(await until(() => logLines(/^configuration reload/).length > before, 10_000)).toBe(true);
}

describe("the auth matrix", () => {
  it("forward mode: no token and a wrong token get 407 with Proxy-Authenticate; a valid one is served", async () => {
    const none = await store(p.url, "fa-none");
    expect(none.status).toBe(407);
    expect(none.headers["proxy-authenticate"]).toMatch(/Bearer realm="stoka-proxy"/);
    const wrong = await store(proxyAs("team-a", "not-the-token"), "fa-wrong");
    expect(wrong.status).toBe(407);
    expect(wrong.headers["proxy-authenticate"]).toMatch(/Bearer/);
    const ok = await store(proxyAs("team-a", TOKEN_A), "fa-ok");
    expect(ok.status).toBe(201);
    const requestId = ok.headers["x-request-id"];
    const row = ledger().find((r) => r.requestId === requestId);
    expect(row).toMatchObject({ client: "team-a", state: "settled" });
    // The line is written when the answer is finished, a moment after the client has it.
    const line = await requestLine(requestId);
    expect(line).toMatchObject({ client: "team-a", status: 201, outcome: "settled" });
    expect(await metrics()).toMatch(
      /stoka_proxy_payments_total\{[^}]*client="team-a"[^}]*outcome="settled"[^}]*\} 1/,
    );
  });

  it("gateway mode: no token and a wrong token get 401 with WWW-Authenticate; a valid one is served", async () => {
    const none = await gatewayStore("ga-none");
    expect(none.status).toBe(401);
    expect(none.headers["www-authenticate"]).toMatch(/Bearer realm="stoka-proxy"/);
    const wrong = await gatewayStore("ga-wrong", "Bearer not-the-token");
    expect(wrong.status).toBe(401);
    expect(wrong.headers["www-authenticate"]).toMatch(/Bearer/);
    const ok = await gatewayStore("ga-ok", `Bearer ${TOKEN_B}`);
    expect(ok.status).toBe(201);
    const requestId = ok.headers["x-request-id"];
    expect(ledger().find((r) => r.requestId === requestId)).toMatchObject({
      client: "team-b",
      state: "settled",
    });
    expect(await requestLine(requestId)).toMatchObject({
      client: "team-b",
      mode: "gateway",
    });
    expect(await metrics()).toMatch(/stoka_proxy_spent_atomic_total\{[^}]*client="team-b"[^}]*\} 1400/);
    expect(p.output()).not.toContain(TOKEN_A);
    expect(p.output()).not.toContain(TOKEN_B);
  });
});

describe("reload", () => {
  it("SIGHUP with a lowered budget: the process lives on and the next paid request is refused budget_exceeded", async () => {
    rewrite({ budgets: [{ name: "day", limits: { day: "0.0001 USDC" } }] });
    await hangUp();
    expect(p.child.exitCode).toBeNull();
    expect(logLines(/^configuration reloaded/).at(-1)).toMatchObject({
      trigger: "SIGHUP",
      applied: ["budgets"],
    });
    const refused = await store(proxyAs("team-a", TOKEN_A), "after-hup");
    expect(refused.status).toBe(402);
    expect(refused.headers["x-stoka-proxy-error"]).toBe("budget_exceeded");
    const text = await metrics();
    expect(text).toMatch(/stoka_proxy_config_reloads_total\{result="success"\} 1/);
    expect(text).toMatch(/stoka_proxy_budget_limit_atomic\{budget="day",period="day"\} 1000\b/);
    const loaded = Number(/^stoka_proxy_config_last_load_timestamp_seconds (\S+)$/m.exec(text)?.[1]);
    expect(Math.abs(loaded - Date.now() / 1000)).toBeLessThan(30);
  });

  it("SIGHUP with broken YAML: refused, the log says why, the configuration in use keeps serving", async () => {
    writeFileSync(p.configPath, "budgets: [ { name: day\n  limits: {{{\n");
    await hangUp();
    expect(p.child.exitCode).toBeNull();
    const refusal = logLines(/^configuration reload refused/).at(-1);
    expect(String(refusal?.error)).toMatch(/config\.yaml: \(file\): not valid YAML\/JSON at line \d+/);
    // Still the lowered budget, and still the same clients.
    const still = await store(proxyAs("team-a", TOKEN_A), "after-broken");
    expect(still.headers["x-stoka-proxy-error"]).toBe("budget_exceeded");
    expect((await store(p.url, "still-407")).status).toBe(407);
    expect(await metrics()).toMatch(/stoka_proxy_config_reloads_total\{result="failure"\} 1/);
  });

  it("POST /admin/reload needs the admin token; with it, applies new clients and budgets and names what needs a restart", async () => {
    rewrite({
      clients: clients(["team-a", TOKEN_A], ["team-c", TOKEN_C]),
      budgets: [{ name: "day", limits: { day: "1 USDC" } }],
      listen: "127.0.0.1:1",
    });
    const none = await reload();
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/Bearer/);
    expect((await reload("wrong-admin-token-wrong")).status).toBe(401);
    // Nothing was applied by the refused calls.
    expect((await store(proxyAs("team-c", TOKEN_C), "c-before")).status).toBe(407);

    // A plain-HTTP tunnel to the paid host, opened by team-b while its token is valid.
    const tunnel = await tunnelAs(TOKEN_B);
    const ok = await reload(ADMIN_TOKEN);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({
      status: "reloaded",
      applied: ["budgets", "clients"],
      needs_restart: ["listen"],
    });
    // Same connection-serving process, same listener; the new client is served, the removed one is not.
    expect((await store(proxyAs("team-c", TOKEN_C), "c-after")).status).toBe(201);
    expect((await gatewayStore("b-after", `Bearer ${TOKEN_B}`)).status).toBe(401);
    expect(ledger().find((r) => r.client === "team-c")).toMatchObject({ state: "settled" });
    // The tunnel team-b opened before the reload serves it no longer.
    tunnel.write("GET /.well-known/stoka.json HTTP/1.1\r\nHost: test.api.stoka.space\r\n\r\n");
    const answer = await readUntilClosed(tunnel, 10_000);
    expect(answer.status).toBe(407);
    expect(answer.closed).toBe(true);
  });

  it("an invalid configuration is answered 422 with the error, the one in use kept", async () => {
    rewrite({ budgets: [{ name: "day", limits: { day: "lots" } }] });
    const bad = await reload(ADMIN_TOKEN);
    expect(bad.status).toBe(422);
    const body = (await bad.json()) as { status: string; error: string };
    expect(body.status).toBe("refused");
    expect(body.error).toMatch(/budgets\.0\.limits\.day/);
    expect((await store(proxyAs("team-c", TOKEN_C), "c-still")).status).toBe(201);
    // On a loopback listener, no client tokens is allowed: everyone is the default client again.
    rewrite({ clients: [] });
    expect((await reload(ADMIN_TOKEN)).status).toBe(200); // loopback: anonymous is allowed
    expect((await store(p.url, "anon")).status).toBe(201);
  });
});

describe("a reload that tightens egress", () => {
  it("closes open blind tunnels and WebSockets to what it now denies, and keeps the rest", async () => {
    // Two echo services on loopback; the new policy allows only the second one's port.
    const echo = net.createServer((c) => c.pipe(c));
    const ws = http.createServer();
    ws.on("upgrade", (_req, socket: net.Socket) => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
      socket.pipe(socket);
    });
    const kept = net.createServer((c) => c.pipe(c));
    for (const srv of [echo, ws, kept]) await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const portOf = (srv: net.Server) => (srv.address() as AddressInfo).port;
    const proxyPort = Number(new URL(p.url).port);
    try {
      rewrite({ clients: [] });
      expect((await reload(ADMIN_TOKEN)).status).toBe(200);
      const denied = await openTunnel(proxyPort, `127.0.0.1:${portOf(echo)}`);
      const allowed = await openTunnel(proxyPort, `127.0.0.1:${portOf(kept)}`);
      const socket = await connect(proxyPort);
      socket.write(
        `GET http://127.0.0.1:${portOf(ws)}/chat HTTP/1.1\r\nHost: 127.0.0.1:${portOf(ws)}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      let got = "";
      socket.on("data", (c: Buffer) => (got += c.toString("latin1")));
      expect(await until(() => got.includes("\r\n\r\n"), 5000)).toBe(true);
      expect(got).toMatch(/^HTTP\/1\.1 101/);
      // Both tunnels carry bytes before the reload.
      denied.resume();
      const echoed = new Promise<string>((r) => denied.once("data", (c: Buffer) => r(c.toString())));
      denied.write("ping");
      expect(await echoed).toBe("ping");

      rewrite({ clients: [], egress: { allow_ports: [80, 443, portOf(kept)] } });
      const answer = await reload(ADMIN_TOKEN);
      expect(await answer.json()).toMatchObject({ applied: ["egress"] });
      expect(await closedWithin(denied, 5000)).toBe(true);
      expect(await closedWithin(socket, 5000)).toBe(true);
      const closedLine = () =>
        logLines(/^closed open tunnels the new egress policy denies/).some((l) => l.tunnels === 2);
      expect(await until(closedLine, 5000)).toBe(true);
      // The tunnel the new policy still allows carries bytes as before.
      allowed.resume();
      const still = new Promise<string>((r) => allowed.once("data", (c: Buffer) => r(c.toString())));
      allowed.write("pong");
      expect(await still).toBe("pong");
      allowed.destroy();
    } finally {
      rewrite({ clients: [] });
      await reload(ADMIN_TOKEN);
      for (const srv of [echo, ws, kept]) srv.close();
      ws.closeAllConnections();
    }
  });
});

describe("without an admin token", () => {
  it("POST /admin/reload answers 403 saying how to enable it, even on loopback", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb);
    const bare = await startProxyProcess(sb, configPath, dataDir);
    try {
      const res = await fetch(`${bare.adminUrl}/admin/reload`, { method: "POST" });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { hint: string }).hint).toMatch(
        /STOKA_PROXY_ADMIN_TOKEN|admin\.token_file/,
      );
      expect((await fetch(`${bare.adminUrl}/admin/reload`)).status).toBe(405);
    } finally {
      await bare.stop();
    }
  }, 60_000);
});
