import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { LookupFunction } from "node:net";
import { Readable } from "node:stream";
import type { Writable } from "node:stream";
import { Agent as UndiciAgent } from "undici";
import { headersFromRaw } from "./raw-headers.js";
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

/**
 * An upstream's answer as the proxy reads it: the parts of `http.IncomingMessage` it uses
 * (status, headers, whether the body came whole) over a readable body. Node's client gives an
 * IncomingMessage; undici's (most requests, `send`) a BodyStream.
 */
export type UpstreamAnswer = Readable & {
  readonly statusCode?: number | undefined;
  readonly statusMessage?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly complete: boolean;
  /**
   * Writes the rest of the answer straight into `out` and ends it (undici's answers): what a
   * pipe does, without a stream's machinery per chunk. Only before anything was read.
   */
  sinkTo?(out: Writable): void;
};

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
  /** undici's pools for `send` (paid hosts resolve as the system does: they are configured). */
  private readonly dispatcher: UndiciAgent;

  constructor(private readonly options: UpstreamOptions) {
    this.secureContext = tls.createSecureContext({ ca: [...tls.rootCertificates, ...options.caPems] });
    ({ http: this.httpAgent, https: this.httpsAgent } = this.createAgents());
    this.freshHttpAgent = new http.Agent({ keepAlive: false });
    this.freshHttpsAgent = new https.Agent({ keepAlive: false, secureContext: this.secureContext });
    this.dispatcher = this.createDispatcher();
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

  /**
   * An undici dispatcher with the same bounds, trust store and `lookup` (pass-through uses it:
   * its client costs about half of `http.request`'s CPU per request, bench/README.md). One
   * pool per origin, kept-alive sockets closed after POOL.idleMs; verification stays on.
   */
  createDispatcher(lookup?: LookupFunction): UndiciAgent {
    return new UndiciAgent({
      // undici has no cap on sockets in all: origins are capped instead (past it a request to
      // a new origin fails as `connect`, nothing sent, until idle origins close).
      maxOrigins: POOL.maxTotalSockets,
      connections: POOL.maxSockets,
      keepAliveTimeout: POOL.idleMs,
      keepAliveMaxTimeout: POOL.idleMs,
      headersTimeout: this.options.timeoutMs,
      bodyTimeout: this.options.timeoutMs,
      connect: {
        timeout: this.options.connectTimeoutMs,
        secureContext: this.secureContext,
        rejectUnauthorized: true,
        ...(lookup ? { lookup } : {}),
      },
    });
  }

  /**
   * Sends one request. A pooled request whose body is in memory goes out on undici (about
   * half the CPU of `http.request`, bench/README.md); the paid retry (`fresh`, `beforeWrite`:
   * the ledger's `sent` row must precede every byte), a streamed body, and the headers undici
   * refuses or frames differently (Expect, Transfer-Encoding, DELETE/OPTIONS' Content-Length: 0)
   * keep Node's client. Both fail with the same UpstreamError kinds.
   */
  send(r: UpstreamRequest): Promise<UpstreamAnswer> {
    return undiciCan(r) ? this.sendUndici(r) : this.sendNode(r);
  }

  private sendUndici(r: UpstreamRequest): Promise<UpstreamAnswer> {
    const body = r.body as Buffer | undefined;
    const host = r.url.host;
    return new Promise((resolve, reject) => {
      // undici calls onConnect once the socket is open, just before the request is written: a
      // failure before it sent nothing (`connect`), after it something may have (`dropped`).
      let abort: ((e?: Error) => void) | undefined;
      let answer: UndiciAnswer | undefined;
      this.dispatcher.dispatch(
        {
          origin: r.url.origin,
          path: `${r.url.pathname}${r.url.search}`,
          method: r.method,
          headers: r.headers as Record<string, string | string[]>,
          body: body && body.length > 0 ? body : null,
        },
        {
          onConnect: (a: (e?: Error) => void) => {
            abort = a;
          },
          onHeaders: (status: number, raw: Buffer[], resume: () => void, reason: string) => {
            if (status < 200) return true;
            // Not HTTP (RFC 9110 §15: 100-599), and Node's writeHead would throw on relaying it.
            if (!validStatus(status)) {
              reject(
                new UpstreamError("dropped", `${host} answered with an invalid status ${String(status)}`),
              );
              return false;
            }
            answer = new UndiciAnswer(
              status,
              reason,
              headersFromRaw(raw),
              resume,
              (e) => abort?.(e),
              () =>
                answer?.destroy(
                  new UpstreamError(
                    "timeout",
                    `${host}'s answer was not read for ${this.options.timeoutMs} ms`,
                  ),
                ),
              this.options.timeoutMs,
            );
            // No body whatever the Content-Length says (RFC 9110 §6.4.1): whole now. undici then
            // fails a 204/304 that names a length and drops the socket; the answer stands.
            if (status === 204 || status === 304 || r.method === "HEAD") answer.finish();
            resolve(answer);
            return true;
          },
          onData: (chunk: Buffer) => (answer ? answer.push(chunk) : true),
          onComplete: () => {
            if (answer && !answer.complete) answer.finish();
          },
          onError: (e: Error & { code?: string }) => {
            if (answer?.complete) return;
            // Past the cap on origins nothing was sent: Node's client takes it (it queues).
            if (!answer && !abort && e.code === "UND_ERR_MAX_ORIGINS_REACHED") {
              return void this.sendNode(r).then(resolve, reject);
            }
            if (answer) return void answer.destroy(failureOf(e, host, true, this.options));
            reject(failureOf(e, host, abort !== undefined, this.options));
          },
        },
      );
    });
  }

  private sendNode(r: UpstreamRequest): Promise<http.IncomingMessage> {
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
    void this.dispatcher.destroy();
  }
}

/**
 * undici's failure on a 100 (Continue) it did not ask for (client-h1: "bad response"), where
 * RFC 9110 §15.2 has a client read past it. On a paid host it stays `dropped` (the request
 * reached the server; resending is the resilience layer's call, and it does not resend a
 * delivered request); pass-through sends the safe request again on Node's client.
 */
export function unsolicitedContinue(e: Error & { code?: string }): boolean {
  return e.code === "UND_ERR_SOCKET" && e.message === "bad response";
}

/** Headers undici refuses, or frames itself (the body here is a Buffer it measures). */
const NODE_ONLY_HEADERS = new Set(["expect", "transfer-encoding", "keep-alive", "upgrade", "connection"]);

/** Whether undici sends `r` as Node's client would (see UpstreamClient.send). */
function undiciCan(r: UpstreamRequest): boolean {
  if (r.fresh || r.beforeWrite) return false;
  if (r.body !== undefined && !Buffer.isBuffer(r.body)) return false;
  if (r.method === "DELETE" || r.method === "OPTIONS" || r.method === "CONNECT") return false;
  const bodyLength = r.body?.length ?? 0;
  for (const k in r.headers) {
    const name = k.toLowerCase();
    if (NODE_ONLY_HEADERS.has(name)) return false;
    // undici requires the length it measures; a disagreeing one keeps Node's behaviour.
    if (name === "content-length" && Number(r.headers[k]) !== bodyLength) return false;
  }
  return true;
}

/** undici's failure as the UpstreamError kind Node's client path gives. */
function failureOf(
  e: Error & { code?: string },
  host: string,
  connected: boolean,
  options: UpstreamOptions,
): UpstreamError {
  switch (e.code) {
    case "UND_ERR_CONNECT_TIMEOUT":
      return new UpstreamError(
        "connect",
        `connecting to ${host} took longer than ${options.connectTimeoutMs} ms`,
      );
    case "UND_ERR_HEADERS_TIMEOUT":
      return new UpstreamError("timeout", `${host} did not answer within ${options.timeoutMs} ms`);
    case "UND_ERR_BODY_TIMEOUT":
      return new UpstreamError("timeout", `${host} stopped sending its body`);
    default:
      return new UpstreamError(connected ? "dropped" : "connect", `${host}: ${e.code ?? e.message}`);
  }
}

/** An answer from undici as a Readable with IncomingMessage's fields (UpstreamAnswer). Exported for its unit test. */
export class UndiciAnswer extends Readable {
  complete = false;

  /** Set while undici is paused for a reader that stopped reading. */
  private unread: NodeJS.Timeout | undefined;

  constructor(
    readonly statusCode: number,
    readonly statusMessage: string,
    readonly headers: IncomingHttpHeaders,
    private readonly resumeUpstream: () => void,
    private readonly abort: (e?: Error) => void,
    private readonly onUnread: () => void,
    private readonly unreadMs: number,
  ) {
    super();
  }

  /**
   * undici's body timeout does not run while it is paused: a reader (the app, through the
   * pipe) that stops reading would hold the connection for ever. Node's client timed out its
   * idle socket; the same time limit applies here from the moment undici is paused.
   */
  override push(chunk: Buffer | null): boolean {
    if (this.sink) return this.toSink(chunk);
    if (chunk === null) this.endPushed = true;
    const more = super.push(chunk);
    if (!more && chunk !== null && this.unread === undefined) {
      this.unread = setTimeout(this.onUnread, this.unreadMs);
    }
    return more;
  }

  /** Back-pressure: undici paused when `push` returned false; reading again resumes it. */
  override _read(): void {
    // With a sink the Readable is out of the way: 'drain' alone resumes undici.
    if (this.sink) return;
    if (this.unread !== undefined) {
      clearTimeout(this.unread);
      this.unread = undefined;
    }
    this.resumeUpstream();
  }

  /** Where the bytes go once `sinkTo` was called: undici's chunks are written straight to it. */
  private sink: Writable | undefined;

  /** The answer is consumed by the sink: it never emits 'end' itself (nothing listens for it). */
  sinkTo(out: Writable): void {
    this.piped = true;
    // What undici handed over before (the head and the first bytes come in one read). read()
    // may resume undici synchronously; what it pushes then lands in the same buffer and comes
    // out in this read, in order: `sink` is set only after, so nothing overtakes these bytes.
    const early = this.readableLength > 0 ? (this.read() as Buffer | null) : null;
    this.sink = out;
    if (early !== null) this.toSink(early);
    if (this.endPushed || (this.complete && this.endPending)) {
      clearImmediate(this.endLater);
      this.endLater = undefined;
      this.endPending = false;
      this.toSink(null);
    }
  }

  private toSink(chunk: Buffer | null): boolean {
    const out = this.sink as Writable;
    if (chunk === null) {
      if (!this.sunk) {
        this.sunk = true;
        this.stopWaitingForDrain();
        out.end();
      }
      return false;
    }
    if (out.destroyed) return false;
    if (out.write(chunk)) return true;
    // Back-pressure, as a pipe would: undici stays paused until the app has taken the bytes,
    // within the same time limit as a reader that stopped reading.
    if (!this.paused) {
      this.paused = true;
      out.once("drain", this.sinkDrained);
    }
    this.unread ??= setTimeout(this.onUnread, this.unreadMs);
    return false;
  }

  /**
   * No resume once the answer is over: undici's resume is the socket's, and a pooled socket
   * may by then carry another request.
   */
  private stopWaitingForDrain(): void {
    if (this.paused) this.sink?.off("drain", this.sinkDrained);
    this.paused = false;
    clearTimeout(this.unread);
    this.unread = undefined;
  }

  /** undici was told to pause (a write to the sink returned false) and waits for 'drain'. */
  private paused = false;

  private sunk = false;
  /** The end went into the Readable before the sink. */
  private endPushed = false;
  /** finish() ran before the sink: its end is still to come (setImmediate), or comes here. */
  private endPending = false;

  private readonly sinkDrained = (): void => {
    if (!this.paused || this.sunk) return;
    this.paused = false;
    clearTimeout(this.unread);
    this.unread = undefined;
    this.resumeUpstream();
  };

  /** Piped to the app: nothing this process sends waits on its end. */
  private piped = false;

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    this.piped = true;
    return super.pipe(destination, options);
  }

  /**
   * A piped answer ends at once. One read here is told its end two turns of the event loop
   * later: undici hands a finished connection back to its pool one turn after the answer (a
   * setImmediate of its own), and a request the reader sends at once on the end (the manifest
   * after a 402) would find it busy and open a second connection.
   */
  finish(): void {
    this.complete = true;
    if (this.piped) this.push(null);
    else {
      this.endPending = true;
      this.endLater = setImmediate(() => {
        this.endLater = setImmediate(() => {
          this.endLater = undefined;
          this.endPending = false;
          this.push(null);
        });
      });
    }
  }

  /**
   * The deferred end of `finish`, while it waits. A sink taking the answer ends it at once and
   * cancels this: each turn it would wait is a turn of the event loop that cannot block
   * (an extra poll per request on the paid host's path).
   */
  private endLater: NodeJS.Immediate | undefined;

  /** Destroyed before the end (a 402 body past its cap, the app gone): the socket goes too. */
  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.stopWaitingForDrain();
    clearImmediate(this.endLater);
    if (!this.complete) this.abort(err ?? new Error("answer discarded"));
    cb(err);
  }
}
