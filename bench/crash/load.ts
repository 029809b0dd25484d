import { ProxyAgent, request } from "undici";

/**
 * Paid stores through whichever proxies are up at each moment, a few at a time, so the load
 * lasts long enough for a crash to land in its middle. A request whose proxy is down waits for
 * one to come back (bounded); one cut off by a crash counts as `dropped`.
 */
const BASE = "http://test.api.stoka.space";
/** 42 bytes: the emulator charges 1400 atomic units to store it (src/sandbox/pricing.ts). */
export const BODY = Buffer.from("k".repeat(42));
export const PRICE = 1400n;

export interface LoadTally {
  requests: number;
  paid: number;
  /** Refusals by `X-Stoka-Proxy-Error` code (402 budget_exceeded, terms_rejected, …). */
  refused: Record<string, number>;
  /** 502/504 naming a payment: money may have moved. */
  indeterminate: number;
  /** The connection died (the proxy was killed or stopped mid-request), or no proxy came back. */
  dropped: number;
  other: number;
  /** The proxy's own words for a refusal that should not happen here (not a full budget). */
  reasons: string[];
}

/** Refusals every scenario expects; the others keep their reason for the report. */
const EXPECTED_REFUSALS = new Set(["budget_exceeded", "terms_rejected"]);

export interface Load {
  /** Resolves once `n` requests have been paid (or the load ended): money has moved by then. */
  paid(n: number): Promise<void>;
  done: Promise<LoadTally>;
}

export function startLoad(options: {
  requests: number;
  concurrency: number;
  prefix: string;
  /** The proxies up now; asked before every request. */
  targets: () => string[];
}): Load {
  const agents = new Map<string, ProxyAgent>();
  const agentFor = (uri: string) => {
    let a = agents.get(uri);
    if (!a) agents.set(uri, (a = new ProxyAgent({ uri, connections: 64 })));
    return a;
  };
  const tally: LoadTally = {
    requests: options.requests,
    paid: 0,
    refused: {},
    indeterminate: 0,
    dropped: 0,
    other: 0,
    reasons: [],
  };
  let ended = false;
  let next = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) {
      if (ended || tally.paid >= w.n) w.resolve();
      else waiters.push(w);
    }
  };
  const pickTarget = async (i: number): Promise<string | undefined> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const up = options.targets();
      if (up.length > 0) return up[i % up.length];
      if (Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const one = async (i: number) => {
    const target = await pickTarget(i);
    if (!target) return void (tally.dropped += 1);
    try {
      const res = await request(`${BASE}/v1/store`, {
        method: "POST",
        headers: { "x-stoka-key": `${options.prefix}-${i}` },
        body: BODY,
        dispatcher: agentFor(target),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      const code = res.headers["x-stoka-proxy-error"];
      const text = await res.body.text();
      if (typeof code === "string" && !EXPECTED_REFUSALS.has(code) && tally.reasons.length < 3)
        tally.reasons.push(`${code}: ${reasonOf(text)}`);
      if (res.statusCode >= 200 && res.statusCode < 300 && res.headers["x-stoka-proxy-paid"]) tally.paid += 1;
      else if (res.statusCode === 402 && typeof code === "string")
        tally.refused[code] = (tally.refused[code] ?? 0) + 1;
      else if (res.statusCode === 502 || res.statusCode === 504) tally.indeterminate += 1;
      else tally.other += 1;
    } catch {
      tally.dropped += 1;
    }
  };
  const worker = async () => {
    while (next < options.requests) {
      await one(next++);
      wake();
    }
  };
  const done = (async () => {
    try {
      await Promise.all(Array.from({ length: options.concurrency }, worker));
      return tally;
    } finally {
      ended = true;
      wake();
      await Promise.all([...agents.values()].map((a) => a.close().catch(() => undefined)));
    }
  })();
  return {
    paid: (n) =>
      new Promise<void>((resolve) => {
        waiters.push({ n, resolve });
        wake();
      }),
    done,
  };
}

function reasonOf(body: string): string {
  try {
    return (JSON.parse(body) as { proxy?: { reason?: string } }).proxy?.reason ?? body.slice(0, 200);
  } catch {
    return body.slice(0, 200);
  }
}

/** "60 paid, 40 budget_exceeded, 3 dropped" */
export function describeTally(t: LoadTally): string {
  const parts = [`${t.paid} paid`];
  for (const [code, n] of Object.entries(t.refused).sort()) parts.push(`${n} ${code}`);
  if (t.indeterminate) parts.push(`${t.indeterminate} indeterminate`);
  if (t.dropped) parts.push(`${t.dropped} dropped`);
  if (t.other) parts.push(`${t.other} other`);
  const why = [...new Set(t.reasons)].map((r) => ` [${r}]`).join("");
  return parts.join(", ") + why;
}
