import { request as httpRequest } from "node:http";
import type { ClientRequest, Agent as HttpAgent, IncomingMessage, ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import type { Agent as HttpsAgent } from "node:https";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { StokaProxyError } from "../errors.js";
import type { EgressPolicy } from "../config/config.js";
import { appendVia, withoutHopByHop } from "../http/hop-by-hop.js";
import { EgressDenied, pinnedLookup, systemResolver } from "./pinned-lookup.js";
import type { Resolver } from "./pinned-lookup.js";
import { sendError, upstreamFailure } from "./error-answers.js";
import { validStatus } from "../http/status.js";
import { stripOwnHeaders } from "./respond.js";
import type { UpstreamClient } from "../http/upstream-client.js";

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
  forward(req: IncomingMessage, res: ServerResponse, origin: URL): void {
    const clean = withoutHopByHop(req.headers);
    for (const k of Object.keys(req.headers)) if (!(k in clean)) delete req.headers[k];
    appendVia(req.headers, this.via);
    // A bodiless DELETE/OPTIONS says so: some servers wait for a body without a length.
    if ((req.method === "DELETE" || req.method === "OPTIONS") && req.headers["content-length"] === undefined)
      req.headers["content-length"] = "0";
    const secure = origin.protocol === "https:";
    const hostname = origin.hostname.startsWith("[") ? origin.hostname.slice(1, -1) : origin.hostname;
    let timedOut = false;
    let failed = false;
    const proxyReq = (secure ? httpsRequest : httpRequest)({
      hostname,
      port: origin.port || (secure ? 443 : 80),
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: secure ? this.httpsAgent : this.httpAgent,
      rejectUnauthorized: true,
    });
    proxyReq.setTimeout(this.timeoutMs, () => {
      timedOut = true;
      proxyReq.destroy();
    });
    // The app went away (or its request broke): nothing to answer, the upstream call goes too.
    const clientGone = () => res.destroyed || req.socket.destroyed;
    res.once("close", () => {
      if (!res.writableFinished) proxyReq.destroy();
    });
    req.once("error", () => proxyReq.destroy());
    proxyReq.once("error", (err: Error & { code?: string }) => {
      if (failed) return;
      failed = true;
      if (clientGone() && !timedOut) return;
      if (err instanceof EgressDenied) {
        return sendError(
          res,
          new StokaProxyError("egress_denied", err.message, "ask the operator to allow this host in egress"),
        );
      }
      this.onError(timedOut ? "timeout" : "connect");
      sendError(res, upstreamFailure(timedOut, origin.host, err.code ?? err.message));
    });
    proxyReq.once("response", (proxyRes: IncomingMessage) => this.answer(proxyRes, res));
    req.pipe(proxyReq);
  }

  /** The upstream's answer to the app, cleaned as the class comment says, streamed. */
  private answer(proxyRes: IncomingMessage, res: ServerResponse): void {
    // Node's writeHead throws on a status outside 100-999 or a control byte in the reason
    // phrase. A status outside 100-599 is not HTTP (RFC 9110 §15); the reason phrase is
    // optional and clients ignore it (RFC 9112 §4), so a bad one is dropped.
    if (!validStatus(proxyRes.statusCode)) {
      proxyRes.resume();
      return sendError(
        res,
        new StokaProxyError(
          "upstream_unreachable",
          `the upstream answered with an invalid status ${String(proxyRes.statusCode)}`,
          "the host is not speaking HTTP correctly",
        ),
      );
    }
    if (res.headersSent || res.destroyed) {
      proxyRes.resume();
      return;
    }
    // A body cut short upstream is cut short for the app too: its connection closes, so it
    // cannot take the part for the whole (the pipe alone would leave it waiting forever).
    proxyRes.once("close", () => {
      if (!proxyRes.complete) res.destroy();
    });
    // Our own headers say what the proxy did; an upstream must not write them.
    stripOwnHeaders(proxyRes.headers);
    const headers = withoutHopByHop(proxyRes.headers);
    appendVia(headers, this.via);
    // RFC 9112 §9.6: the app's connection is ours to keep or close, not the upstream's.
    headers.connection = res.shouldKeepAlive ? "keep-alive" : "close";
    res.statusCode = proxyRes.statusCode as number;
    const reason = proxyRes.statusMessage ?? "";
    if (reason && /^[\t\x20-\x7e\x80-\xff]*$/.test(reason)) res.statusMessage = reason;
    for (const k in headers) {
      const v = headers[k];
      if (v !== undefined) res.setHeader(k, v);
    }
    proxyRes.pipe(res);
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
            ? new StokaProxyError(
                "egress_denied",
                err.message,
                "ask the operator to allow this host in egress",
              )
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
  }

  close(): void {
    this.proxy.close();
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
