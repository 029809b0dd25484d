import http from "node:http";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ledger } from "../../src/ledger/ledger.js";
import { startSandbox } from "../../src/sandbox/sandbox.js";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { openDatabase } from "../../src/storage/sqlite.js";
import { curl } from "../support/clients.js";
import { startProxyProcess, writeProxyConfig } from "../support/proxy-process.js";
import type { ProxyProcess } from "../support/proxy-process.js";
import { closedWithin, openTunnel, until } from "../support/sockets.js";

/**
 * SIGTERM drains (docs/operations.md, Stopping): /readyz turns 503, new connections are
 * refused, the requests in flight (a slow upload, a payment waiting on stoka) finish with their
 * bytes and their ledger rows, then the process exits 0. Past the drain time what is still
 * running is cut and logged, and its payment is not lost: the next start marks it indeterminate.
 */
const BASE = "http://test.api.stoka.space";
const PRICE = 1400n;

let sb: Sandbox;
beforeAll(async () => {
  sb = await startSandbox();
});
afterAll(async () => {
  await sb.close();
});

const budgets = [{ name: "day", limits: { day: "1 USDC" } }];

function ledgerOf(dataDir: string) {
  const db = openDatabase(join(dataDir, "stoka-proxy.db"));
  const rows = new Ledger(db).latest();
  db.close();
  return rows;
}

/** A forward-mode POST whose body is written in `chunks` pieces, `gapMs` apart. */
function slowUpload(
  proxyUrl: string,
  key: string,
  body: Buffer,
  chunks: number,
  gapMs: number,
  onFirstChunk: () => void,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const u = new URL(proxyUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname,
      port: Number(u.port),
      method: "POST",
      path: `${BASE}/v1/store`,
      headers: { host: "test.api.stoka.space", "x-stoka-key": key, "content-length": body.length },
      agent: new http.Agent({ keepAlive: true }),
    });
    req.on("response", (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    const size = Math.ceil(body.length / chunks);
    let i = 0;
    const next = () => {
      const piece = body.subarray(i * size, (i + 1) * size);
      i += 1;
      if (i === 1) req.write(piece, onFirstChunk);
      else req.write(piece);
      if (i * size >= body.length) req.end();
      else setTimeout(next, gapMs);
    };
    next();
  });
}

const exited = (p: ProxyProcess) =>
  new Promise<{ code: number | null; signal: string | null; at: number }>((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null)
      return resolve({ code: p.child.exitCode, signal: p.child.signalCode, at: Date.now() });
    p.child.once("exit", (code, signal) => resolve({ code, signal, at: Date.now() }));
  });

function connectRefused(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname);
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
  });
}

/** The JSON log lines of a process with `msg` matching. */
const logLines = (p: ProxyProcess, msg: RegExp) =>
  p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => msg.test(String(l.msg)));

describe("SIGTERM drains", () => {
  it("a slow upload and a payment mid-flight both complete; new connections are refused; exit 0", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb, { budgets, shutdown: { drain_seconds: 20 } });
    const p = await startProxyProcess(sb, configPath, dataDir);
    const admin = p.adminUrl;
    // A blind tunnel, idle through the drain: closed at its end, not kept open by the proxy.
    const origin = http.createServer((_q, r) => r.end("ok"));
    await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r));
    const tunnel = net.connect(Number(new URL(p.url).port), "127.0.0.1");
    const originPort = (origin.address() as net.AddressInfo).port;
    tunnel.write(`CONNECT 127.0.0.1:${originPort} HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\n\r\n`);
    await new Promise((r) => tunnel.once("data", r));
    try {
      // The paid request's answer is held 3 s after stoka charged: the payment is in flight.
      sb.emulator.addFault({ kind: "slow", delayMs: 3000, stage: "after_settle" });
      const paid = curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "drain-paid" },
        body: Buffer.from("p".repeat(42)),
      });
      expect(await until(() => sb.emulator.chargedTotal(sb.wallet.publicKey()) >= PRICE, 20_000)).toBe(true);
      // The upload is under way (its first bytes sent) when SIGTERM arrives; the rest trickles.
      const uploadBody = Buffer.from("u".repeat(42));
      let firstSent: () => void = () => undefined;
      const started = new Promise<void>((r) => (firstSent = r));
      const upload = slowUpload(p.url, "drain-upload", uploadBody, 6, 400, () => firstSent());
      await started;
      const done = exited(p);
      const signalled = Date.now();
      p.child.kill("SIGTERM");
      expect(await until(() => logLines(p, /^draining/).length > 0, 10_000)).toBe(true);

      // During the drain: not ready, metrics and health still served, no new connection.
      const ready = await fetch(`${admin}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { reasons: string[] }).reasons).toContain("shutting down");
      expect((await fetch(`${admin}/healthz`)).status).toBe(200);
      expect((await fetch(`${admin}/metrics`)).status).toBe(200);
      expect(await connectRefused(p.url)).toBe(true);

      const [paidRes, uploadRes] = await Promise.all([paid, upload]);
      expect(paidRes.status).toBe(201);
      expect(uploadRes.status).toBe(201);
      // The upload's connection was kept alive; it is told it closes after this answer.
      expect(uploadRes.headers.connection).toBe("close");
      expect(await closedWithin(tunnel, 15_000)).toBe(true);
      const end = await done;
      expect(end.code).toBe(0);
      expect(end.at - signalled).toBeLessThan(20_000);

      const rows = ledgerOf(dataDir);
      expect(rows.map((r) => r.state)).toEqual(["settled", "settled"]);
      expect(rows.every((r) => r.url.endsWith("/v1/store") && r.amount === PRICE)).toBe(true);
      expect(sb.emulator.chargedTotal(sb.wallet.publicKey())).toBe(2n * PRICE);
      // What the emulator stored is what the apps uploaded.
      expect(sb.emulator.state.getBlob(sb.wallet.publicKey(), "drain-upload")?.data.equals(uploadBody)).toBe(
        true,
      );

      const [drained] = logLines(p, /^drained/);
      expect(drained).toMatchObject({ completed: 2, cut: 0 });
      expect(p.output()).not.toContain(sb.wallet.secret());
    } finally {
      tunnel.destroy();
      origin.close();
      await p.stop("SIGKILL");
    }
  }, 90_000);

  it("past a short drain time the request is cut and logged, its payment kept; the next start marks it indeterminate", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb, { budgets, shutdown: { drain_seconds: 1 } });
    const p = await startProxyProcess(sb, configPath, dataDir);
    const charged = sb.emulator.chargedTotal(sb.wallet.publicKey());
    try {
      sb.emulator.addFault({ kind: "slow", delayMs: 8000, stage: "after_settle" });
      const paid = curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "drain-cut" },
        body: Buffer.from("c".repeat(42)),
      }).catch((e: Error) => ({ status: 0, error: e.message }));
      expect(
        await until(() => sb.emulator.chargedTotal(sb.wallet.publicKey()) >= charged + PRICE, 20_000),
      ).toBe(true);
      const done = exited(p);
      const signalled = Date.now();
      p.child.kill("SIGTERM");
      const end = await done;
      expect(end.code).toBe(0);
      // One second of drain, then the cut: well before the 8 s stoka takes.
      expect(end.at - signalled).toBeLessThan(6000);
      expect((await paid).status).not.toBe(201);

      const [cut] = logLines(p, /^cut by shutdown/);
      expect(cut?.request_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(cut?.payment_id).toBeTruthy();
      expect(logLines(p, /^drained/)[0]).toMatchObject({ cut: 1 });
      // The row is as the cut left it: money may have moved, so nothing is freed.
      const before = ledgerOf(dataDir).find((r) => r.paymentId === cut?.payment_id);
      expect(before?.state).toBe("sent");
      expect(before?.requestId).toBe(cut?.request_id);
    } finally {
      await p.stop("SIGKILL");
    }
    const again = await startProxyProcess(sb, configPath, dataDir);
    try {
      expect(await until(() => /interrupted by the last stop/.test(again.output()), 10_000)).toBe(true);
    } finally {
      await again.stop();
    }
    const after = ledgerOf(dataDir);
    expect(after).toHaveLength(1);
    expect(after[0]?.state).toBe("indeterminate");
  }, 90_000);

  it("a second SIGTERM cuts at once", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb, { budgets, shutdown: { drain_seconds: 30 } });
    const p = await startProxyProcess(sb, configPath, dataDir);
    try {
      sb.emulator.addFault({ kind: "slow", delayMs: 10_000, stage: "challenge" });
      const pending = curl({
        proxy: p.url,
        method: "POST",
        url: `${BASE}/v1/store`,
        headers: { "X-Stoka-Key": "twice" },
        body: Buffer.from("t".repeat(42)),
      }).catch(() => undefined);
      // The request is at stoka (its 402 is held), in flight at the proxy.
      expect(await until(() => sb.emulator.switches.faults.length === 0, 10_000)).toBe(true);
      const done = exited(p);
      const signalled = Date.now();
      p.child.kill("SIGTERM");
      expect(await until(() => logLines(p, /^draining/).length > 0, 10_000)).toBe(true);
      p.child.kill("SIGTERM");
      const end = await done;
      expect(end.code).toBe(0);
      expect(end.at - signalled).toBeLessThan(8000);
      expect(logLines(p, /^drained/)[0]).toMatchObject({ cut: 1 });
      await pending;
    } finally {
      await p.stop("SIGKILL");
    }
  }, 60_000);

  it("an idle intercepted tunnel does not hold the drain: it is closed at once, the process exits 0", async () => {
    const { configPath, dataDir } = writeProxyConfig(sb, { budgets, shutdown: { drain_seconds: 20 } });
    const p = await startProxyProcess(sb, configPath, dataDir);
    try {
      const caPath = logLines(p, /interception CA/)[0]?.ca;
      const raw = await openTunnel(Number(new URL(p.url).port), "test.api.stoka.space:443");
      const secure = tls.connect({
        socket: raw,
        servername: "test.api.stoka.space",
        ca: readFileSync(String(caPath), "utf8"),
      });
      await new Promise<void>((resolve, reject) => {
        secure.once("secureConnect", resolve);
        secure.once("error", reject);
      });
      // One request answered on it; the tunnel then sits idle, kept alive.
      secure.write("GET /.well-known/stoka.json HTTP/1.1\r\nHost: test.api.stoka.space\r\n\r\n");
      let got = "";
      secure.on("data", (c: Buffer) => (got += c.toString()));
      expect(await until(() => /^HTTP\/1\.1 200/.test(got) && got.includes("}"), 10_000)).toBe(true);
      const done = exited(p);
      const signalled = Date.now();
      p.child.kill("SIGTERM");
      expect(await closedWithin(secure, 10_000)).toBe(true);
      const end = await done;
      expect(end.code).toBe(0);
      expect(end.at - signalled).toBeLessThan(10_000);
      expect(logLines(p, /^drained/)[0]).toMatchObject({ completed: 0, cut: 0 });
    } finally {
      await p.stop("SIGKILL");
    }
  }, 60_000);
});
