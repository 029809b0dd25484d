import http from "node:http";
import https from "node:https";
import type { AttemptResult } from "./backoff.js";

/**
 * One webhook POST over node:http(s): the whole exchange (connect, headers, body) within
 * `timeoutMs`, redirects not followed, the response body read up to 64 KiB and discarded.
 * Proxy environment variables play no part (node:http ignores them): a webhook goes straight
 * to its receiver. Never throws; every failure is an AttemptResult.
 */
export interface PostRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  signal: AbortSignal;
}

export interface Transport {
  post(request: PostRequest): Promise<AttemptResult>;
  close(): void;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

export function httpTransport(): Transport {
  // Shared by every destination; the notifier keeps one request in flight per destination.
  // Kept alive between deliveries, destroyed with the notifier.
  const agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 4 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 4 }),
  };
  return {
    post(r) {
      if (r.signal.aborted) return Promise.resolve({ kind: "aborted" });
      let url: URL;
      try {
        url = new URL(r.url);
      } catch {
        return Promise.resolve({ kind: "connection", code: "EINVALIDURL" });
      }
      const secure = url.protocol === "https:";
      return new Promise<AttemptResult>((resolve) => {
        let req: http.ClientRequest;
        try {
          req = (secure ? https : http).request(url, {
            method: "POST",
            agent: secure ? agents.https : agents.http,
            headers: { ...r.headers, "content-length": String(Buffer.byteLength(r.body)) },
          });
        } catch {
          resolve({ kind: "connection", code: "EINVALIDREQUEST" });
          return;
        }
        let settled = false;
        const finish = (result: AttemptResult) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          r.signal.removeEventListener("abort", onAbort);
          resolve(result);
        };
        const timer = setTimeout(() => {
          finish({ kind: "timeout" });
          req.destroy();
        }, r.timeoutMs);
        const onAbort = () => {
          finish({ kind: "aborted" });
          req.destroy();
        };
        r.signal.addEventListener("abort", onAbort, { once: true });
        req.on("error", (err: NodeJS.ErrnoException) =>
          finish({ kind: "connection", code: err.code ?? "ERROR" }),
        );
        req.on("response", (res) => {
          let seen = 0;
          const retryAfter = res.headers["retry-after"];
          const done = () =>
            finish({
              kind: "status",
              status: res.statusCode ?? 0,
              ...(typeof retryAfter === "string" ? { retryAfter } : {}),
            });
          res.on("data", (chunk: Buffer) => {
            seen += chunk.length;
            if (seen > MAX_RESPONSE_BYTES) {
              done();
              res.destroy();
            }
          });
          res.on("end", done);
          res.on("error", () => finish({ kind: "connection", code: "ECONNRESET" }));
        });
        req.end(r.body);
      });
    },
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}
