import { request as httpRequest } from "node:http";
import type {
  ClientRequest,
  Agent as HttpAgent,
  IncomingHttpHeaders,
  IncomingMessage,
  ServerResponse,
} from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import type { Agent as HttpsAgent } from "node:https";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import type { Agent as UndiciAgent } from "undici";
import { headersFromRaw } from "../http/raw-headers.js";
import { unsolicitedContinue } from "../http/upstream-client.js";
import type { StokaProxyError } from "../errors.js";
import type { EgressPolicy } from "../config/config.js";
import { appendVia, withoutHopByHop } from "../http/hop-by-hop.js";
import { EgressDenied, pinnedLookup, systemResolver } from "./pinned-lookup.js";
import type { Resolver } from "./pinned-lookup.js";
import { egressDenied, notHttp, sendError, upstreamFailure } from "./error-answers.js";
import { validStatus } from "../http/status.js";
import { stripOwnHeaders } from "./respond.js";
import type { UpstreamClient } from "../http/upstream-client.js";
import type { PassOrigin } from "../http/pass-origin.js";

/**
 * Hosts that are not paid hosts: streamed both ways, untouched but for the hop-by-hop headers
 * (RFC 9110 §7.6.1) and our Via. No payment, no header injection. The agents resolve names
 * through pinned-lookup.ts: the egress policy is applied to the address actually connected,
 * after DNS. WebSockets go through http-proxy-3's ws pass.
 */
export class Passthrough {
  private readonly proxy = createProxyServer({
    xfwd: false,
    changeOrigin: false,
    ws: false,
    selfHandleResponse: false,
  });

  private httpAgent: HttpAgent;
  private readonly wsAddress = new WeakMap<Duplex, (address: string) => void>();
  private httpsAgent: HttpsAgent;
  private readonly makeAgents: () => { http: HttpAgent; https: HttpsAgent };
  /** Bodiless requests go out on undici (see `forward`); its pools are reset with the agents'. */
  private dispatcher: UndiciAgent;
  private readonly makeDispatcher: () => UndiciAgent;

  constructor(
    upstream: UpstreamClient,
    private readonly via: string,
    private readonly timeoutMs: number,
    private readonly onError: (kind: "connect" | "timeout") => void = () => undefined,
    egress?: EgressPolicy | (() => EgressPolicy),
    resolve: Resolver = systemResolver,
  ) {
    const lookup = egress ? pinnedLookup(egress, resolve) : undefined;
    this.makeAgents = () => upstream.createAgents(lookup);
    ({ http: this.httpAgent, https: this.httpsAgent } = this.makeAgents());
    this.makeDispatcher = () => upstream.createDispatcher(lookup);
    this.dispatcher = this.makeDispatcher();
    // The address a WebSocket's upstream connection went to (the pinned lookup chose it): a
    // reload that turns deny_private on judges the WebSocket by it (connections.ts).
    this.proxy.on("proxyReqWs", (proxyReq: ClientRequest, _req: IncomingMessage, socket: Duplex) => {
      const tell = this.wsAddress.get(socket);
      if (!tell) return;
      this.wsAddress.delete(socket);
      proxyReq.once("socket", (s: Socket) => {
        let told = false;
        const once = () => {
          if (told || !s.remoteAddress) return;
          told = true;
          tell(s.remoteAddress);
        };
        once();
        s.once("connect", once);
        s.once("secureConnect", once);
      });
    });
  }

  /**
   * `origin` is the upstream origin; `req.url` must already be origin-form. A plain
   * `http.request` piped both ways: http-proxy-3's web pass cost ~15 % of pass-through
   * throughput (bench/README.md) for options this path never uses; WebSockets still take it.
   */
  forward(req: IncomingMessage, res: ServerResponse, origin: PassOrigin): void {
    if (bodiless(req)) return this.forwardBodiless(req, res, origin);
    this.forwardOnNode(req, res, origin);
  }

  /** Node's client: requests with a body, and what undici cannot take (see forwardBodiless). */
  private forwardOnNode(req: IncomingMessage, res: ServerResponse, origin: PassOrigin): void {
    // The body's framing is this hop's (RFC 9112 §6), read before the hop-by-hop headers go.
    const chunked = req.headers["transfer-encoding"] !== undefined;
    const length = req.headers["content-length"];
    const headers = withoutHopByHop(req.headers);
    appendVia(headers, this.via);
    // Node frames a body it has no length for only for methods that usually carry one: a
    // chunked GET or DELETE body would go up unframed and be read as the next request on a
    // pooled connection. A length named in Connection is still the body's length. With
    // neither, there is no body (RFC 9112 §6.3), and a DELETE/OPTIONS says so: some servers
    // wait for a body without a length.
    if (chunked) headers["transfer-encoding"] = "chunked";
    else if (length !== undefined) headers["content-length"] = length;
    else if (req.method === "DELETE" || req.method === "OPTIONS") headers["content-length"] = "0";
    const { secure, hostname } = origin;
    let timedOut = false;
    let failed = false;
    let answer: IncomingMessage | undefined;
    let answerHeaders: string[] = [];
    const proxyReq = (secure ? httpsRequest : httpRequest)({
      hostname,
      port: origin.port,
      method: req.method,
      path: req.url,
      headers,
      agent: secure ? this.httpsAgent : this.httpAgent,
      rejectUnauthorized: true,
    });
    proxyReq.setTimeout(this.timeoutMs, () => {
      timedOut = true;
      proxyReq.destroy();
    });
    // The app went away (or its request broke): nothing to answer, the upstream call goes too.
    const clientGone = () => res.destroyed || req.socket.destroyed;
    const onAppError = () => proxyReq.destroy();
    req.once("error", onAppError);
    res.once("close", () => {
      // The app's request outlives this exchange on a kept-alive connection: a listener left
      // on it would keep the whole upstream exchange reachable, and a scavenge would promote
      // it (every request's objects reached the old generation that way).
      req.removeListener("error", onAppError);
      if (!res.writableFinished) proxyReq.destroy();
    });
    // The upstream stopped reading (it answered early, or failed): the rest of the upload is
    // read and dropped, as Node does for a request its handler ignored, so the app's
    // connection can carry its next request.
    proxyReq.once("close", () => {
      if (req.complete) return;
      req.unpipe(proxyReq);
      req.resume();
    });
    // The upstream failed. Before any byte of its answer was written, the answer is withdrawn
    // and the failure answered (502/504); after, the app's connection is cut (a whole answer
    // stands whatever follows it).
    const fail = (err: Error & { code?: string }) => {
      if (failed) return;
      failed = true;
      if (answer) {
        if (answer.complete) return;
        if (res.headersSent) return void res.destroy();
        for (const k of answerHeaders) res.removeHeader(k);
        res.statusMessage = "";
      }
      if (clientGone() && !timedOut) return;
      if (err instanceof EgressDenied) {
        return sendError(res, egressDenied(err.message));
      }
      this.onError(timedOut ? "timeout" : "connect");
      sendError(res, upstreamFailure(timedOut, origin.authority, err.code ?? err.message));
    };
    proxyReq.once("error", fail);
    proxyReq.once("response", (proxyRes: IncomingMessage) => {
      answer = proxyRes;
      answerHeaders = this.answer(proxyRes, res, fail);
    });
    // RFC 9110 §15.2: a proxy forwards 1xx answers, never to an HTTP/1.0 app. Node writes only
    // 103 (Link headers) of its own; 100 is Node's to send, others are dropped.
    proxyReq.on("information", (info: { statusCode: number; headers: IncomingHttpHeaders }) => {
      const link = info.headers.link;
      if (info.statusCode !== 103 || link === undefined || req.httpVersion !== "1.1") return;
      if (res.headersSent || res.destroyed) return;
      try {
        res.writeEarlyHints({ link });
      } catch {
        // A Link value Node refuses to write is a hint the app does without.
      }
    });
    // Upgrade was not forwarded, so a 101 is not an answer to this request (RFC 9110 §15.2.2).
    proxyReq.once("upgrade", (_r: IncomingMessage, socket: Duplex) => {
      socket.destroy();
      failed = true;
      sendError(res, notHttp("the upstream switched protocols on a request that did not ask to"));
    });
    req.pipe(proxyReq);
  }

  /**
   * The upstream's answer to the app, cleaned as the class comment says, streamed; returns the
   * header names it set, so a failure before the first byte can withdraw them.
   */
  private answer(proxyRes: IncomingMessage, res: ServerResponse, fail: (e: Error) => void): string[] {
    const names = this.answerHead(proxyRes.statusCode, proxyRes.statusMessage, proxyRes.headers, res);
    if (names === null) {
      proxyRes.resume();
      return [];
    }
    // A body cut short upstream is cut short for the app too, so it cannot take the part for
    // the whole (the pipe alone would leave it waiting forever).
    proxyRes.once("close", () => {
      if (!proxyRes.complete) fail(new Error("the upstream's answer was cut short"));
    });
    proxyRes.pipe(res);
    return names;
  }

  /**
   * The answer's status line and headers, set on `res` (not written: the head goes with the
   * first byte of the body); null when there is nothing to relay (answered here instead, or
   * the app is gone).
   */
  private answerHead(
    status: number | undefined,
    reason: string | undefined,
    upstreamHeaders: IncomingHttpHeaders,
    res: ServerResponse,
  ): string[] | null {
    // Node's writeHead throws on a status outside 100-999 or a control byte in the reason
    // phrase. A status outside 100-599 is not HTTP (RFC 9110 §15); the reason phrase is
    // optional and clients ignore it (RFC 9112 §4), so a bad one is dropped.
    if (!validStatus(status)) {
      sendError(res, notHttp(`the upstream answered with an invalid status ${String(status)}`));
      return null;
    }
    if (res.headersSent || res.destroyed) return null;
    // Our own headers say what the proxy did; an upstream must not write them.
    stripOwnHeaders(upstreamHeaders);
    const headers = withoutHopByHop(upstreamHeaders);
    appendVia(headers, this.via);
    // Connection and Keep-Alive are Node's to write: it knows whether it can frame the body
    // for this app.
    res.statusCode = status as number;
    if (reason && /^[\t\x20-\x7e\x80-\xff]*$/.test(reason)) res.statusMessage = reason;
    const names: string[] = [];
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined) continue;
      res.setHeader(k, v);
      names.push(k);
    }
    return names;
  }

  /**
   * A request without a body (no Content-Length, no Transfer-Encoding): most pass-through
   * traffic. It goes out on undici, whose client costs about half of `http.request`'s CPU
   * (bench/README.md); requests with a body, and the DELETE/OPTIONS undici would send without
   * their `Content-Length: 0`, keep Node's client above. Same answers, same failures.
   */
  private forwardBodiless(req: IncomingMessage, res: ServerResponse, origin: PassOrigin): void {
    const headers = withoutHopByHop(req.headers);
    appendVia(headers, this.via);
    let abort: ((e?: Error) => void) | undefined;
    let names: string[] | null = null;
    let done = false;
    const onClose = () => {
      if (!done && !res.writableFinished) abort?.();
    };
    res.once("close", onClose);
    let resumeBody: () => void = () => undefined;
    // undici's body timeout does not run while it is paused for an app that stopped reading;
    // Node's client timed out the idle socket, and the same limit applies here.
    let unread: NodeJS.Timeout | undefined;
    const onDrain = () => {
      clearTimeout(unread);
      unread = undefined;
      resumeBody();
    };
    const fail = (err: Error & { code?: string }) => {
      if (done) return;
      done = true;
      clearTimeout(unread);
      res.removeListener("close", onClose);
      // Past undici's cap on origins nothing was sent: Node's client takes it (it queues).
      if (err.code === "UND_ERR_MAX_ORIGINS_REACHED" && abort === undefined && names === null) {
        return this.forwardOnNode(req, res, origin);
      }
      // undici fails a 100 (Continue) it did not ask for; a client must read past it (RFC 9110
      // §15.2). The request is safe (GET/HEAD, no body: RFC 9110 §9.2.1), so it is sent again
      // on Node's client, which does.
      if (unsolicitedContinue(err) && names === null && !res.destroyed)
        return this.forwardOnNode(req, res, origin);
      if (names !== null) {
        // After the head: a byte may be out, so the app's connection is cut (a whole answer
        // stands whatever follows it); before, the answer is withdrawn and the failure told.
        if (res.headersSent) return void res.destroy();
        for (const k of names) res.removeHeader(k);
        res.statusMessage = "";
      }
      if (res.destroyed || req.socket.destroyed) return;
      if (err instanceof EgressDenied) return sendError(res, egressDenied(err.message));
      if (err.message === "bad upgrade") {
        return sendError(res, notHttp("the upstream switched protocols on a request that did not ask to"));
      }
      const timedOut = UNDICI_TIMEOUTS.has(err.code ?? "");
      this.onError(timedOut ? "timeout" : "connect");
      const detail = err.code?.startsWith("UND_ERR") ? err.message : (err.code ?? err.message);
      sendError(res, upstreamFailure(timedOut, origin.authority, detail));
    };
    this.dispatcher.dispatch(
      { origin: origin.origin, path: req.url ?? "/", method: req.method ?? "GET", headers, body: null },
      {
        onConnect: (a: (e?: Error) => void) => {
          abort = a;
          if (res.destroyed) a();
        },
        onHeaders: (status: number, raw: Buffer[], resume: () => void, reason: string) => {
          if (status < 200) {
            this.earlyHints(req, res, status, raw);
            return true;
          }
          names = this.answerHead(status, reason, headersFromRaw(raw), res);
          if (names === null) {
            done = true;
            res.removeListener("close", onClose);
            abort?.();
            return false;
          }
          resumeBody = resume;
          // These answers have no body whatever their Content-Length says (RFC 9110 §6.4.1,
          // §15.3.5, §15.4.5), so they are whole now. undici then refuses a 304 or 204 that
          // names a length (a length mismatch) and drops the socket; the app has its answer.
          if (status === 204 || status === 304 || req.method === "HEAD") {
            done = true;
            res.removeListener("close", onClose);
            res.end();
          }
          return true;
        },
        // Back-pressure: undici stops reading the upstream until the app has taken the bytes.
        onData: (chunk: Buffer) => {
          if (res.write(chunk)) return true;
          res.once("drain", onDrain);
          unread ??= setTimeout(() => {
            const e = Object.assign(new Error(`the app did not read the answer for ${this.timeoutMs} ms`), {
              code: "UND_ERR_BODY_TIMEOUT",
            });
            abort?.(e);
          }, this.timeoutMs);
          return false;
        },
        onComplete: () => {
          if (done) return;
          done = true;
          clearTimeout(unread);
          res.removeListener("close", onClose);
          res.end();
        },
        onError: fail,
      },
    );
  }

  /** RFC 9110 §15.2: 1xx answers are forwarded, never to an HTTP/1.0 app; Node writes 103 only. */
  private earlyHints(req: IncomingMessage, res: ServerResponse, status: number, raw: Buffer[]): void {
    if (status !== 103 || req.httpVersion !== "1.1" || res.headersSent || res.destroyed) return;
    const link = headersFromRaw(raw).link;
    if (link === undefined) return;
    try {
      res.writeEarlyHints({ link });
    } catch {
      // A Link value Node refuses to write is a hint the app does without.
    }
  }

  /**
   * A WebSocket to a host that is not paid (proxy/upgrade.ts decided): http-proxy-3's ws pass,
   * over the same pinned agents. Upgrade and Connection are the only hop-by-hop headers kept.
   */
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    origin: URL,
    fail: (e: StokaProxyError) => void,
    onAddress?: (address: string) => void,
  ): void {
    if (onAddress) this.wsAddress.set(socket, onAddress);
    const upgrade = req.headers.upgrade;
    const clean = withoutHopByHop(req.headers);
    for (const k of Object.keys(req.headers)) if (!(k in clean)) delete req.headers[k];
    Object.assign(req.headers, { upgrade, connection: "Upgrade" });
    appendVia(req.headers, this.via);
    const secure = origin.protocol === "https:";
    this.proxy.ws(
      req,
      socket,
      head,
      { target: origin.origin, agent: secure ? this.httpsAgent : this.httpAgent, secure: true },
      (err: Error & { code?: string }) =>
        fail(
          err instanceof EgressDenied
            ? egressDenied(err.message)
            : upstreamFailure(false, origin.host, err.code ?? err.message),
        ),
    );
  }

  /**
   * A pooled connection skips the lookup where the egress policy is applied: after the policy
   * changes (a reload), every kept connection goes, so each new request is checked again.
   */
  resetPools(): void {
    const old = [this.httpAgent, this.httpsAgent];
    ({ http: this.httpAgent, https: this.httpsAgent } = this.makeAgents());
    for (const a of old) a.destroy();
    const dispatcher = this.dispatcher;
    this.dispatcher = this.makeDispatcher();
    void dispatcher.destroy();
  }

  close(): void {
    this.proxy.close();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    void this.dispatcher.destroy();
  }
}

/**
 * No body (RFC 9112 §6.3), a safe method (sent again on Node's client if undici meets an
 * unasked 100), and no Expect (undici refuses it).
 */
function bodiless(req: IncomingMessage): boolean {
  const h = req.headers;
  if (h["content-length"] !== undefined || h["transfer-encoding"] !== undefined || h.expect !== undefined) {
    return false;
  }
  return req.method === "GET" || req.method === "HEAD";
}

/** undici's timeouts: connecting, waiting for the head, a body that stopped coming. */
const UNDICI_TIMEOUTS = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);
