import { spawnSync } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { RetryPolicy } from "../../src/operator/notify/backoff.js";
import { paymentIndeterminateEvent, paymentRefusedTermsEvent } from "../../src/operator/notify/events.js";
import { Notifier } from "../../src/operator/notify/notifier.js";
import type { NotifierObserver } from "../../src/operator/notify/notifier.js";
import { SIGNATURE_HEADER, verifySignature } from "../../src/operator/notify/signature.js";
import { requireTool } from "../support/tools.js";

/**
 * The notifier against real local webhook receivers (node:http on port 0), with real timers
 * and its real HTTP transport: a delivery arrives once and verifies; a receiver that is down is
 * retried, then given up on, counted; a slow one times out, is retried, and never has more
 * than the queue bound waiting for it; a 500 is retried; a 503's Retry-After is waited out.
 */
const SECRET = "e2e-webhook-secret-0123456789abcdef";
const AT = Date.parse("2026-03-15T12:00:00Z");

interface Hit {
  atMs: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  verified: boolean;
}

type Answer = { status: number; headers?: Record<string, string>; delayMs?: number };

interface Receiver {
  url: string;
  hits: Hit[];
  /** Most requests open at the same time. */
  maxConcurrent: number;
  close(): Promise<void>;
}

async function receiver(answer: (n: number) => Answer): Promise<Receiver> {
  const hits: Hit[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let open = 0;
  const r: Receiver = { url: "", hits, maxConcurrent: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    open += 1;
    r.maxConcurrent = Math.max(r.maxConcurrent, open);
    let closed = false;
    const done = () => {
      if (!closed) open -= 1;
      closed = true;
    };
    req.socket.once("close", done);
    res.once("finish", done);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      hits.push({
        atMs: Date.now(),
        headers: req.headers,
        body: raw.toString("utf8"),
        verified: verifySignature({
          header: req.headers[SIGNATURE_HEADER],
          body: raw,
          secrets: SECRET,
          nowMs: Date.now(),
        }).ok,
      });
      const a = answer(hits.length);
      const send = () => {
        if (!res.destroyed) res.writeHead(a.status, a.headers).end();
      };
      if (a.delayMs) {
        const t = setTimeout(() => {
          timers.delete(t);
          send();
        }, a.delayMs);
        timers.add(t);
      } else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  r.close = () =>
    new Promise<void>((resolve) => {
      for (const t of timers) clearTimeout(t);
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return r;
}

/** A URL nothing listens on: a port that was just free, closed again. */
async function deadUrl(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}/hook`;
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

const PY_VERIFIER = new URL("../clients/verify_webhook.py", import.meta.url).pathname;

/** The receiver recipe docs/webhooks.md gives, in Python: exit 0 when the signature holds. */
function pythonVerifies(header: string, body: string, secret = SECRET): boolean {
  const r = spawnSync("python3", [PY_VERIFIER, secret, header], { input: body, timeout: 10_000 });
  return r.status === 0;
}

const FAST: RetryPolicy = { maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 200, maxElapsedMs: 5_000 };

const indeterminate = (id: string) =>
  paymentIndeterminateEvent({
    paymentId: id,
    route: "store",
    client: "app-a",
    amount: 1_400n,
    reason: "upstream answered 502 after the paid retry",
    upstreamStatus: 502,
    tx: null,
    atMs: AT,
  });

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function notifierFor(
  url: string,
  opts: { timeoutMs?: number; queueSize?: number; retry?: RetryPolicy; observer?: NotifierObserver } = {},
) {
  const n = new Notifier(
    {
      destinations: [{ name: "ops", url, secret: SECRET, timeoutMs: opts.timeoutMs ?? 2_000 }],
      rules: [{ events: ["payment.indeterminate", "payment.refused_terms"], minSeverity: "info" }],
      queueSize: opts.queueSize ?? 100,
      dedupWindowMs: 60_000,
      retry: opts.retry ?? FAST,
    },
    opts.observer ? { observer: opts.observer } : {},
  );
  cleanup.push(() => n.close(1_000));
  return n;
}

describe("webhook deliveries to real receivers", () => {
  it("a 2xx: delivered once, the signature verifies, the body is the event", async () => {
    const rcv = await receiver(() => ({ status: 204 }));
    cleanup.push(() => rcv.close());
    const n = notifierFor(rcv.url);
    n.notify(indeterminate("pay-1"));
    n.notify(indeterminate("pay-1")); // the same event again: deduplicated
    await until(() => n.stats().destinations.ops?.delivered === 1);
    const stats = await n.close(2_000);
    expect(rcv.hits).toHaveLength(1);
    const hit = rcv.hits[0] as Hit;
    expect(hit.verified).toBe(true);
    expect(hit.headers["content-type"]).toBe("application/json");
    expect(hit.headers["x-stoka-proxy-event"]).toBe("payment.indeterminate");
    expect(hit.headers["user-agent"]).toBe("stoka-proxy-webhook/1");
    const body = JSON.parse(hit.body) as Record<string, unknown>;
    expect(body).toMatchObject({
      id: hit.headers["x-stoka-proxy-delivery"],
      event: "payment.indeterminate",
      severity: "critical",
      data: {
        payment_id: "pay-1",
        route: "store",
        client: "app-a",
        amount: { atomic: "1400", usdc: "0.00014 USDC" },
      },
    });
    expect(hit.body).not.toContain(SECRET);
    // The documented Python recipe agrees, and refuses a changed body or another secret.
    requireTool("python3");
    const header = String(hit.headers[SIGNATURE_HEADER]);
    expect(pythonVerifies(header, hit.body)).toBe(true);
    expect(pythonVerifies(header, hit.body.replace("1400", "1401"))).toBe(false);
    expect(pythonVerifies(header, hit.body, "another-secret-0123456789")).toBe(false);
    expect(stats).toMatchObject({ accepted: 1, deduplicated: 1 });
    expect(stats.destinations.ops).toMatchObject({ delivered: 1, attempts: 1, exhausted: 0 });
  });

  it("a 500: retried with the same id until it is taken", async () => {
    const rcv = await receiver((k) => ({ status: k < 3 ? 500 : 200 }));
    cleanup.push(() => rcv.close());
    const n = notifierFor(rcv.url);
    n.notify(indeterminate("pay-2"));
    await until(() => n.stats().destinations.ops?.delivered === 1);
    expect(rcv.hits).toHaveLength(3);
    expect(new Set(rcv.hits.map((h) => h.headers["x-stoka-proxy-delivery"])).size).toBe(1);
    expect(rcv.hits.map((h) => h.headers["x-stoka-proxy-attempt"])).toEqual(["1", "2", "3"]);
    expect(rcv.hits.every((h) => h.verified)).toBe(true);
    expect(n.stats().destinations.ops).toMatchObject({ delivered: 1, attempts: 3 });
  });

  it("a 503 with Retry-After: the next attempt waits that long", async () => {
    const rcv = await receiver((k) =>
      k === 1 ? { status: 503, headers: { "retry-after": "1" } } : { status: 200 },
    );
    cleanup.push(() => rcv.close());
    const n = notifierFor(rcv.url);
    n.notify(indeterminate("pay-3"));
    await until(() => n.stats().destinations.ops?.delivered === 1);
    expect(rcv.hits).toHaveLength(2);
    expect((rcv.hits[1] as Hit).atMs - (rcv.hits[0] as Hit).atMs).toBeGreaterThanOrEqual(990);
  });

  it("a receiver that is down: retried, given up on, counted", async () => {
    const failed: string[] = [];
    const n = notifierFor(await deadUrl(), {
      observer: { failed: (d, e, why, k) => failed.push(`${d} ${e} ${why} ${k}`) },
    });
    n.notify(indeterminate("pay-4"));
    await until(() => (n.stats().destinations.ops?.exhausted ?? 0) === 1);
    expect(n.stats().destinations.ops).toMatchObject({
      attempts: FAST.maxAttempts,
      delivered: 0,
      exhausted: 1,
      lastResult: "connection ECONNREFUSED",
    });
    expect(failed).toEqual([`ops payment.indeterminate exhausted ${FAST.maxAttempts}`]);
  });

  it("a slow receiver: each attempt times out and is retried; one at a time; no more than the queue bound waits", async () => {
    const rcv = await receiver(() => ({ status: 200, delayMs: 3_000 }));
    cleanup.push(() => rcv.close());
    const dropped: string[] = [];
    const n = notifierFor(rcv.url, {
      timeoutMs: 200,
      queueSize: 2,
      observer: { dropped: (_d, _e, why) => dropped.push(why) },
    });
    const started = Date.now();
    for (let i = 0; i < 10; i++) {
      n.notify(
        paymentRefusedTermsEvent({
          host: "h",
          route: "store",
          client: "c",
          term: "pay_to",
          offered: `G${i}`,
          reason: "payee not trusted",
          price: 1n,
          atMs: AT,
        }),
      );
    }
    // The burst arrived before the worker started: two wait, the other eight are dropped.
    expect(n.stats().destinations.ops).toMatchObject({ queued: 2, droppedQueueFull: 8 });
    expect(dropped).toEqual(Array(8).fill("queue_full"));
    await until(() => (n.stats().destinations.ops?.exhausted ?? 0) === 2);
    const s = n.stats().destinations.ops;
    expect(s).toMatchObject({
      exhausted: 2,
      delivered: 0,
      attempts: 2 * FAST.maxAttempts,
      lastResult: "timeout",
    });
    expect(rcv.hits).toHaveLength(2 * FAST.maxAttempts);
    expect(new Set(rcv.hits.map((h) => h.headers["x-stoka-proxy-delivery"])).size).toBe(2);
    expect(rcv.maxConcurrent).toBe(1);
    expect(rcv.hits.every((h) => h.verified)).toBe(true);
    // Each attempt ended at its timeout, far before the receiver's 3 s answer.
    expect(Date.now() - started).toBeLessThan(3_000 * 2);
  });

  it("close() with a receiver that is down returns by its deadline and counts what it left", async () => {
    const n = notifierFor(await deadUrl(), {
      retry: { maxAttempts: 20, baseDelayMs: 200, maxDelayMs: 200, maxElapsedMs: 60_000 },
    });
    for (let i = 0; i < 5; i++) n.notify(indeterminate(`pay-c${i}`));
    await until(() => (n.stats().destinations.ops?.attempts ?? 0) >= 1);
    const t0 = Date.now();
    const stats = await n.close(300);
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(stats.destinations.ops).toMatchObject({
      delivered: 0,
      abortedAtShutdown: 1,
      droppedAtShutdown: 4,
    });
  });
});
