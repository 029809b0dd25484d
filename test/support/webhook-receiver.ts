import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local webhook receiver (node:http on 127.0.0.1, port 0) that checks every delivery's
 * signature with test/clients/verify_webhook.py, the receiver recipe docs/webhooks.md gives,
 * so the proxy's signing is checked by code that is not the proxy's. It can answer late
 * (`delayMs`) to play a slow receiver. `deadUrl()` gives a URL nobody listens on.
 */
export interface WebhookHit {
  atMs: number;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The Python verifier's verdict on the signature header and the raw body. */
  verified: Promise<boolean>;
}

export interface WebhookReceiver {
  url: string;
  hits: WebhookHit[];
  close(): Promise<void>;
}

const VERIFIER = new URL("../clients/verify_webhook.py", import.meta.url).pathname;

export function pythonVerifies(secret: string, header: string, body: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn("python3", [VERIFIER, secret, header], { stdio: ["pipe", "ignore", "ignore"] });
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.on("error", () => resolve(false));
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve(code === 0);
    });
    child.stdin.end(body);
  });
}

export async function startWebhookReceiver(
  secret: string,
  opts: { path?: string; status?: number; delayMs?: number } = {},
): Promise<WebhookReceiver> {
  const hits: WebhookHit[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const header = req.headers["x-stoka-proxy-signature"];
      hits.push({
        atMs: Date.now(),
        path: req.url ?? "",
        headers: req.headers,
        body: raw.toString("utf8"),
        verified: typeof header === "string" ? pythonVerifies(secret, header, raw) : Promise.resolve(false),
      });
      const send = () => {
        if (!res.destroyed) res.writeHead(opts.status ?? 204).end();
      };
      if (opts.delayMs) {
        const t = setTimeout(() => {
          timers.delete(t);
          send();
        }, opts.delayMs);
        timers.add(t);
      } else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${opts.path ?? "/hook"}`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A URL nothing listens on: a port that was just free, closed again. */
export async function deadUrl(path = "/hook"): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}${path}`;
}

/** Waits (bounded) until `check` holds. */
export async function until(check: () => boolean, timeoutMs = 15_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
