import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import type { OutgoingHttpHeaders } from "node:http";
import type { LookupFunction } from "node:net";
import type { Readable } from "node:stream";
import { validStatus } from "./status.js";

/**
 * The proxy's own HTTP client toward paid hosts: keep-alive agents, a connect timeout and a
 * response timeout on every call, and an explicit trust store (system roots plus configured
 * CA files; verification cannot be turned off). Node's http never reads HTTP(S)_PROXY, so the
 * proxy never routes its own calls through itself.
 */
export interface UpstreamOptions {
  timeoutMs: number;
  connectTimeoutMs: number;
  caPems: string[];
}

export interface UpstreamRequest {
  url: URL;
  method: string;
  headers: OutgoingHttpHeaders;
  body?: Buffer | Readable;
  /** Use a new connection instead of a pooled one (the paid retry: a stale pooled socket must not turn an unsent payment into an unknown one). */
  fresh?: boolean;
  /**
   * Called once the connection is open (TLS done) and before the first byte of the request is
   * written to it; the request waits for it. The paid retry records `sent` here: without that
   * row, provably nothing left the process (src/resilience/crash-recovery.ts). If it throws,
   * nothing is written and the call fails as `connect`.
   */
  beforeWrite?: () => void | Promise<void>;
}

/** `connect`: nothing reached the server. `timeout` / `dropped`: something may have. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: "connect" | "timeout" | "dropped",
    message: string,
  ) {
    super(message);
  }
}

/**
 * The proxy's own rate limit for the host refused the send (src/proxy/resilience.ts): nothing
 * was sent, so it is a `connect` failure to every caller, with when to try again.
 */
export class UpstreamRateLimited extends UpstreamError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super("connect", message);
  }
}

/**
 * Pool bounds per origin (docs/operations.md, Upstream connections). As many idle sockets may
 * stay as may be open: a smaller idle cap closes and reopens connections under steady load
 * (64 busy client connections with 32 idle slots churned hundreds of upstream connections).
 * Idle sockets close after 4 s, under the 5 s keep-alive timeout of Node servers and most
 * proxies, so a pooled socket is rarely one the server is closing at that moment.
 */
export const POOL = { maxSockets: 256, maxFreeSockets: 256, maxTotalSockets: 4096, idleMs: 4_000 };

export class UpstreamClient {
  readonly httpAgent: http.Agent;
  readonly httpsAgent: https.Agent;
  /** No reuse of a socket (each closes after its response); TLS sessions are still resumed. */
  private readonly freshHttpAgent: http.Agent;
  private readonly freshHttpsAgent: https.Agent;
  /**
   * The trust store parsed once: handing `ca` (150-odd PEMs) to every request made Node join
   * them into the pool key per request and parse them all again for each new TLS connection.
   */
  private readonly secureContext: tls.SecureContext;

  constructor(private readonly options: UpstreamOptions) {
    this.secureContext = tls.createSecureContext({ ca: [...tls.rootCertificates, ...options.caPems] });
    ({ http: this.httpAgent, https: this.httpsAgent } = this.createAgents());
    this.freshHttpAgent = new http.Agent({ keepAlive: false });
    this.freshHttpsAgent = new https.Agent({ keepAlive: false, secureContext: this.secureContext });
  }

  /**
   * Bounded keep-alive agents with this client's trust store; `lookup` decides where names
   * connect. A pooled socket stays tied to the address its lookup chose (and checked): the pool
   * key is the name and port, and a socket never changes address, so reuse never skips the check.
   */
  createAgents(lookup?: LookupFunction): { http: http.Agent; https: https.Agent } {
    const common = {
      keepAlive: true,
      maxSockets: POOL.maxSockets,
      maxFreeSockets: POOL.maxFreeSockets,
      maxTotalSockets: POOL.maxTotalSockets,
      timeout: POOL.idleMs,
      scheduling: "lifo" as const,
    };
    const pinned = lookup ? { lookup } : {};
    return {
      http: new http.Agent({ ...common, ...pinned }),
      // TLS sessions are cached per origin by the agent (maxCachedSessions), so new connections resume.
      https: new https.Agent({ ...common, ...pinned, secureContext: this.secureContext }),
    };
  }

  send(r: UpstreamRequest): Promise<http.IncomingMessage> {
    const secure = r.url.protocol === "https:";
    const agent = r.fresh
      ? secure
        ? this.freshHttpsAgent
        : this.freshHttpAgent
      : secure
        ? this.httpsAgent
        : this.httpAgent;
    return new Promise((resolve, reject) => {
      let connected = false;
      let done = false;
      const fail = (e: UpstreamError) => {
        if (done) return;
        done = true;
        req.destroy();
        reject(e);
      };
      const req = (secure ? https : http).request({
        protocol: r.url.protocol,
        hostname: r.url.hostname.replace(/^\[|\]$/g, ""),
        port: r.url.port || (secure ? 443 : 80),
        path: `${r.url.pathname}${r.url.search}`,
        method: r.method,
        headers: r.headers,
        agent,
        ...(secure ? { servername: r.url.hostname } : {}),
      });
      req.on("socket", (socket) => {
        const pooled = !(socket as { connecting?: boolean }).connecting;
        if (pooled) {
          connected = true;
          return;
        }
        const timer = setTimeout(
          () =>
            fail(
              new UpstreamError(
                "connect",
                `connecting to ${r.url.host} took longer than ${this.options.connectTimeoutMs} ms`,
              ),
            ),
          this.options.connectTimeoutMs,
        );
        socket.once(secure ? "secureConnect" : "connect", () => {
          connected = true;
          clearTimeout(timer);
        });
        socket.once("close", () => clearTimeout(timer));
      });
      req.setTimeout(this.options.timeoutMs, () =>
        fail(
          new UpstreamError("timeout", `${r.url.host} did not answer within ${this.options.timeoutMs} ms`),
        ),
      );
      req.on("error", (e: NodeJS.ErrnoException) => {
        fail(new UpstreamError(connected ? "dropped" : "connect", `${r.url.host}: ${e.code ?? e.message}`));
      });
      req.on("response", (res) => {
        if (done) {
          res.resume();
          return;
        }
        // Not HTTP (RFC 9110 §15: 100-599), and Node's writeHead would throw on relaying it.
        if (!validStatus(res.statusCode)) {
          res.resume();
          fail(
            new UpstreamError(
              "dropped",
              `${r.url.host} answered with an invalid status ${String(res.statusCode)}`,
            ),
          );
          return;
        }
        done = true;
        // Past the headers the body still has an idle timeout.
        res.setTimeout?.(this.options.timeoutMs, () =>
          res.destroy(new UpstreamError("timeout", `${r.url.host} stopped sending its body`)),
        );
        resolve(res);
      });
      const write = () => {
        if (done) return;
        if (r.body === undefined) req.end();
        else if (Buffer.isBuffer(r.body)) req.end(r.body);
        else r.body.pipe(req);
      };
      if (!r.beforeWrite) return write();
      // Node sends nothing (not even the head) before the first write or end: holding those
      // back until the socket is connected and the hook has returned keeps the hook's record
      // ahead of every byte.
      const hook = r.beforeWrite;
      const ready = () => {
        Promise.resolve()
          .then(hook)
          .then(write, (e: unknown) =>
            fail(new UpstreamError("connect", `not sent: ${(e as Error).message ?? String(e)}`)),
          );
      };
      req.once("socket", (socket) => {
        // A pooled socket is connected already; a new one (the paid retry's) is not yet.
        if (!(socket as { connecting?: boolean }).connecting) return ready();
        socket.once(secure ? "secureConnect" : "connect", ready);
      });
    });
  }

  close(): void {
    for (const a of [this.httpAgent, this.httpsAgent, this.freshHttpAgent, this.freshHttpsAgent]) a.destroy();
  }
}
