import http from "node:http";
import { randomBytes } from "node:crypto";
import net from "node:net";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { Registry } from "prom-client";
import { PaymentBook } from "../payment/book.js";
import { caFilesOf, loadOrCreateCa, unconstrainedCaWarning } from "../tls/ca-store.js";
import { makeInterceptor } from "../tls/intercept.js";
import { LeafCertificates } from "../tls/leaf-cache.js";
import { formatUsdc } from "../stellar/amount.js";
import { requestIdFor } from "../observability/request-id.js";
import { ProxyMetrics } from "../observability/metrics.js";
import { reconcile, reconcilerDeps } from "../payment/reconciler.js";
import { openStores } from "../payment/stores.js";
import type { Stores } from "../payment/stores.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import type { MessageSigner } from "../wallet/message-signer.js";
import { createMessageSigner, createPaymentSigner } from "../wallet/setup.js";
import type { PaymentSigner } from "../wallet/payment-signer.js";
import { handleConnect } from "./connect.js";
import type { TunnelSession } from "./connect.js";
import type { RequestRecord } from "../observability/request-record.js";
import type { ProxyContext } from "./context.js";
import { handleForward, handleGateway } from "./forward.js";
import { identify } from "./client-identity.js";
import { clientErrorHandler, insecureParserRequested } from "./client-error.js";
import { ClientConnections } from "./connections.js";
import { hasLoop, viaToken } from "../http/hop-by-hop.js";
import { findPaidHost } from "../config/paid-hosts.js";
import { Passthrough } from "./passthrough.js";
import { PayeeRegistry } from "../payment/payees.js";
import { StokaClient } from "../stoka/client.js";
import type { Resolver } from "./pinned-lookup.js";
import { parseRequestTarget } from "../http/request-target.js";
import { rawErrorResponse, sendError } from "./error-answers.js";
import { requestFramingProblem } from "./request-checks.js";
import { answerAndClose } from "./socket-lifetime.js";
import { targetsListener } from "./self-target.js";
import { UpstreamClient } from "../http/upstream-client.js";

/**
 * The listener: absolute-form → forward, origin-form → gateway, CONNECT → connect.ts. One log
 * line per request, written when the answer is finished.
 *
 *   net listener ──admit (caps)──▶ http (requests, CONNECT) ──tunnel to a paid host──▶ inner
 *        └─ past a cap: 503 too_many_connections, closed
 */
export interface ProxyDeps {
  logger: Logger;
  signer?: PaymentSigner | undefined;
  messageSigner?: MessageSigner | undefined;
  /** Where metrics register (the admin listener serves it); a fresh one when omitted. */
  registry?: Registry;
  /** Injected stores (tests); otherwise opened from config (data_dir, budget_store). */
  stores?: Stores;
  now?: () => number;
  /** Name resolution for hosts that are not paid hosts (tests point names at local servers). */
  resolve?: Resolver;
}

export class StokaProxy {
  readonly ctx: ProxyContext;
  /** Accepts sockets and admits them into `http` within the connection caps. */
  private readonly server: net.Server;
  private readonly http: http.Server;
  private readonly inner: http.Server;
  private readonly connections: ClientConnections;
  private readonly passthrough: Passthrough;
  readonly stores: Stores;
  readonly registry: Registry;
  readonly metrics: ProxyMetrics | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private reconciler: NodeJS.Timeout | undefined;
  private interceptor: ((socket: Duplex, session: TunnelSession) => void) | undefined;
  /** The session of each socket handed to `inner` (a tunnel, or its decrypted TLS stream). */
  private readonly tunnels = new WeakMap<Duplex, TunnelSession>();
  /** The interception CA's certificate file, once loaded (for `stoka-proxy ca` and the banner). */
  caCertPath: string | undefined;
  url = "";
  /** Connections on which a request head was refused for its framing (request-checks.ts). */
  private readonly refusedFraming = new WeakSet<object>();

  constructor(config: ProxyConfig, deps: ProxyDeps) {
    const upstream = new UpstreamClient({
      timeoutMs: config.upstream.timeoutMs,
      connectTimeoutMs: config.upstream.connectTimeoutMs,
      caPems: config.upstream.caPems,
    });
    const signer = "signer" in deps ? deps.signer : createPaymentSigner(config.wallet, config.network);
    this.stores = deps.stores ?? openStores(config);
    // One line when the budget store's state is found lost, one when it is restored.
    this.stores.budgets.watch?.({
      lost: (reason) => deps.logger.warn({ reason }, "budget store lost its state: nothing is paid"),
      restored: (epoch, origin) =>
        deps.logger.info({ epoch, origin }, "budget store restored by an operator: payments resume"),
    });
    const now = deps.now ?? Date.now;
    const via = viaToken(randomBytes(4).toString("hex"));
    const stoka = new StokaClient(upstream, via);
    this.ctx = {
      config,
      logger: deps.logger,
      upstream,
      stoka,
      payees: new PayeeRegistry(stoka, { network: config.network, asset: config.asset }),
      book: new PaymentBook(this.stores.budgets, this.stores.ledger, deps.logger, now, config.leaseMs),
      signer,
      messageSigner: "messageSigner" in deps ? deps.messageSigner : createMessageSigner(config.wallet),
      via,
      now,
      paidHost: (host, port) => findPaidHost(config.paidHosts, host, port),
    };
    this.registry = deps.registry ?? new Registry();
    this.metrics = config.metricsEnabled
      ? new ProxyMetrics(
          this.registry,
          config.budgets,
          this.stores.budgets,
          () => this.stores.ledger.inState("indeterminate").length,
          config.asset,
          config.network,
          now,
          config.walletAuth.flatMap((r) => (r.route ? [r.route] : [])),
        )
      : undefined;
    this.passthrough = new Passthrough(
      upstream,
      this.ctx.via,
      config.upstream.timeoutMs,
      (kind) => this.metrics?.upstreamErrors.inc({ kind }),
      config.egress,
      deps.resolve,
    );
    const t = config.timeouts;
    // Node's own limits, alike on the listener and inside tunnels. The lenient parser is pinned
    // off whatever the process flags say (it accepts CL+TE, obs-fold, bare LF, NUL).
    const strict: http.ServerOptions = {
      insecureHTTPParser: false,
      // Checked in dispatch instead (request-checks.ts), so the refusal carries our code.
      requireHostHeader: false,
      maxHeaderSize: config.maxHeaderBytes,
      headersTimeout: t.headersMs,
      requestTimeout: t.requestMs,
      // Node's default check runs every 30 s, far coarser than the timeouts it enforces.
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(t.headersMs / 4))),
    };
    this.http = http.createServer({ ...strict, keepAliveTimeout: t.clientIdleMs }, (req, res) =>
      this.onRequest(req, res, undefined),
    );
    // Inside a paid host's tunnel the idle time between requests is the tunnel's idle timeout.
    this.inner = http.createServer({ ...strict, keepAliveTimeout: t.tunnelIdleMs }, (req, res) =>
      this.onRequest(req, res, this.tunnels.get(req.socket)),
    );
    // A hand-written listener in front: server.maxConnections drops a connection past the cap
    // without a word, and http.Server offers no hook before its parser takes a socket.
    this.connections = new ClientConnections(config.connections, deps.logger);
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      const verdict = this.connections.admit(socket);
      if (verdict === "admitted") this.http.emit("connection", socket);
      else this.connections.refuse(socket, verdict);
    });
    // The hard stop behind the caps, with room for refusals still being answered (each lingers
    // up to a second): past it Node closes new connections without a word.
    const { maxTotal } = config.connections;
    this.server.maxConnections = maxTotal + Math.max(64, Math.ceil(maxTotal / 2));
    this.http.on("connect", (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      handleConnect(
        {
          ctx: this.ctx,
          serveTunnel: (socket, session) => this.serveTunnel(socket, session),
          ...(this.interceptor ? { interceptTls: this.interceptor } : {}),
          onTunnel: (kind) => this.metrics?.tunnels.inc({ kind }),
          isSelf: (t) => this.pointsAtSelf(t.host, t.port),
          ...(deps.resolve ? { resolve: deps.resolve } : {}),
          trackUpstream: (upstream) => this.connections.trackUpstream(upstream),
        },
        req,
        socket,
        head,
      ),
    );
    // Node answers an expectation it does not know with a bare 417; ours carries the code.
    this.http.on("checkExpectation", (req: http.IncomingMessage, res: http.ServerResponse) =>
      this.onRequest(req, res, undefined),
    );
    this.inner.on("checkExpectation", (req: http.IncomingMessage, res: http.ServerResponse) =>
      this.onRequest(req, res, this.tunnels.get(req.socket)),
    );
    // A CONNECT inside a paid host's tunnel would be a tunnel out of it: refused, not dropped.
    this.inner.on("connect", (_req: http.IncomingMessage, socket: Duplex) => {
      socket.on("error", () => socket.destroy());
      answerAndClose(
        socket,
        rawErrorResponse(
          new StokaProxyError(
            "bad_request",
            "CONNECT inside a tunnel is not proxied",
            "send plain requests (/path) inside the tunnel",
          ),
        ),
      );
    });
    this.http.on("clientError", clientErrorHandler(deps.logger, "proxy"));
    this.inner.on(
      "clientError",
      clientErrorHandler(deps.logger, "tunnel", (socket) => this.tunnels.get(socket)?.host),
    );
  }

  async listen(): Promise<string> {
    if (insecureParserRequested(process.execArgv, process.env.NODE_OPTIONS)) {
      throw new StokaProxyError(
        "config_invalid",
        "Node runs with --insecure-http-parser: the proxy's upstream calls would accept malformed responses",
        "remove --insecure-http-parser from the command line and NODE_OPTIONS",
      );
    }
    if (this.ctx.config.tls.intercept) {
      const files = caFilesOf(this.ctx.config);
      const { ca, certPath, created, constrained } = await loadOrCreateCa(this.ctx.config.dataDir, files);
      if (files.nameConstraints && !constrained) this.ctx.logger.warn(unconstrainedCaWarning(certPath));
      this.caCertPath = certPath;
      if (created)
        this.ctx.logger.info(
          { ca: certPath },
          "generated the interception CA; apps must trust it (stoka-proxy ca)",
        );
      this.interceptor = makeInterceptor(
        new LeafCertificates(ca),
        (decrypted, session: TunnelSession) => this.serveTunnel(decrypted, session),
        this.ctx.logger,
      );
    }
    // Payments a previous run left open were interrupted: their outcome is unknown.
    const interrupted = await this.ctx.book.recoverInterrupted();
    if (interrupted.length > 0) {
      this.ctx.logger.warn(
        { payments: interrupted },
        "payments interrupted by the last stop are now indeterminate; run `stoka-proxy reconcile`",
      );
    }
    this.sweeper = setInterval(() => {
      this.ctx.book
        .expireLeases()
        .catch((e: unknown) => this.ctx.logger.warn({ err: (e as Error).message }, "lease sweep failed"));
    }, 10_000);
    this.sweeper.unref();
    const every = this.ctx.config.reconcile.intervalSeconds;
    if (every > 0) {
      this.reconciler = setInterval(() => {
        reconcile(reconcilerDeps(this.ctx.config, this.ctx), this.ctx.config.reconcile.days, true).then(
          (days) => {
            for (const d of days.filter((x) => x.status === "mismatch"))
              this.ctx.logger.warn(
                { reconcile: d.date, difference: d.difference.toString() },
                "ledger and stoka disagree",
              );
          },
          (e: unknown) => this.ctx.logger.warn({ err: (e as Error).message }, "reconcile failed"),
        );
      }, every * 1000);
      this.reconciler.unref();
    }
    // An http.Server starts watching headersTimeout / requestTimeout (and tracking sockets for
    // closeAllConnections) on its "listening" event. These two never listen themselves: the
    // net listener and the tunnels hand them sockets, so they are told to start here.
    this.http.emit("listening");
    this.inner.emit("listening");
    const { host, port } = this.ctx.config.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.url = `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
    return this.url;
  }

  /** Requests read from `socket` are served by the inner server, for the tunnel's `session`. */
  private serveTunnel(socket: Duplex, session: TunnelSession): void {
    this.tunnels.set(socket, session);
    this.inner.emit("connection", socket);
  }

  /** Open client connections: keep-alive, tunnels of every kind, refusals still closing. */
  async openConnections(): Promise<number> {
    return Promise.resolve(this.connections.open);
  }

  /** Why the proxy cannot pay right now (for /readyz); empty when it can. */
  async readiness(): Promise<string[]> {
    const reasons: string[] = [];
    if (!this.ctx.signer) reasons.push("no wallet configured: 402s are passed back unpaid");
    const store = await this.stores.budgets.check();
    if (store) reasons.push(store);
    return reasons;
  }

  /** Stops at once: every client socket and tunnel is destroyed, so this never waits on a peer. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // Tunnels left the http servers' bookkeeping at the CONNECT: only this list has them all.
      this.connections.destroyAll();
      for (const srv of [this.http, this.inner]) {
        srv.closeAllConnections();
        srv.close(); // stops the timeout checker started in listen()
      }
    });
    clearInterval(this.sweeper);
    clearInterval(this.reconciler);
    this.passthrough.close();
    this.ctx.upstream.close();
    await this.stores.close();
  }

  private onRequest(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    tunnel: TunnelSession | undefined,
  ): void {
    // A request pipelined behind one refused for its framing was framed by that head: it is
    // neither answered nor sent anywhere; the connection closes after the refusal.
    if (this.refusedFraming.has(req.socket)) {
      req.resume();
      return;
    }
    const started = process.hrtime.bigint();
    const record: RequestRecord = {
      requestId: requestIdFor(req.headers["x-request-id"]),
      mode: tunnel ? "tunnel" : "gateway",
      method: req.method ?? "GET",
      host: "",
      route: "other",
      client: this.ctx.config.clientName,
    };
    res.setHeader("x-request-id", record.requestId);
    res.once("close", () => this.logLine(record, res, started));
    this.dispatch(req, res, record, tunnel).catch((e: unknown) => {
      if (!(e instanceof StokaProxyError))
        this.ctx.logger.error({ err: e, request_id: record.requestId }, "request failed");
      sendError(res, e);
    });
  }

  private async dispatch(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    record: RequestRecord,
    tunnel: TunnelSession | undefined,
  ): Promise<void> {
    if (hasLoop(req.headers, this.ctx.via)) {
      throw new StokaProxyError(
        "loop_detected",
        "this request has already passed through this proxy",
        "check HTTP_PROXY and the upstream URLs",
      );
    }
    const framing = requestFramingProblem(req);
    if (framing) {
      // Whatever follows on this connection was framed by a head we refused: it is not served.
      this.refusedFraming.add(req.socket);
      res.shouldKeepAlive = false;
      throw framing;
    }
    // RFC 9112 §3.2: one reading of the target, and nothing ambiguous goes any further.
    const parsed = parseRequestTarget(req.url ?? "/");
    if (!parsed.ok) {
      throw new StokaProxyError(
        "bad_request",
        `ambiguous request target: ${parsed.reason}`,
        "send an origin-form path (/v1/…) or an absolute http(s):// URL, percent-encoding what needs it",
      );
    }
    const target = parsed.target;
    if (tunnel) {
      record.client = tunnel.client;
      const scheme = tunnel.secure ? "https" : "http";
      if (
        target.form === "absolute" &&
        (target.host !== tunnel.host || target.port !== tunnel.port || target.scheme !== scheme)
      ) {
        throw new StokaProxyError(
          "bad_request",
          "an absolute-form target inside a tunnel must name the tunnel's own scheme, host and port",
          "send origin-form requests (/path) inside a CONNECT tunnel",
        );
      }
      const { host, port } = tunnel;
      return handleForward(
        this.ctx,
        this.passthrough,
        req,
        res,
        { scheme, host, port, path: target.path },
        record,
      );
    }
    const absoluteForm = target.form === "absolute";
    const who = identify(req.headers, this.ctx.config.clients, this.ctx.config.clientName, !absoluteForm);
    if (!who.ok) {
      // The code picks the challenge header: Proxy-Authenticate (407) or WWW-Authenticate (401).
      return sendError(
        res,
        new StokaProxyError(
          absoluteForm ? "proxy_auth_required" : "client_auth_required",
          who.reason,
          "send your client token",
        ),
      );
    }
    record.client = who.client;
    if (who.consumedAuthorization) delete req.headers.authorization;
    if (target.form === "absolute") {
      record.mode = "forward";
      if (this.pointsAtSelf(target.host, target.port)) {
        throw new StokaProxyError(
          "loop_detected",
          "the request targets this proxy itself",
          "check HTTP_PROXY and NO_PROXY",
        );
      }
      return handleForward(this.ctx, this.passthrough, req, res, target, record);
    }
    return handleGateway(this.ctx, req, res, record, target.path);
  }

  private pointsAtSelf(host: string, port: number): boolean {
    const addr = this.server.address() as AddressInfo | null;
    return addr ? targetsListener(addr, host, port) : false;
  }

  private logLine(record: RequestRecord, res: http.ServerResponse, started: bigint): void {
    record.status = res.statusCode;
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    this.metrics?.observe(record, res.statusCode, durationMs / 1000);
    this.ctx.logger.info(
      {
        request_id: record.requestId,
        mode: record.mode,
        method: record.method,
        host: record.host,
        route: record.route,
        client: record.client,
        status: record.status,
        paid_atomic: record.paidAtomic,
        // For the person reading the line; paid_atomic stays the exact figure.
        paid_usdc: record.paidAtomic !== undefined ? formatUsdc(BigInt(record.paidAtomic)) : undefined,
        tx: record.tx,
        outcome: record.outcome,
        payment_id: record.paymentId,
        error_code: record.errorCode,
        wallet_auth: record.walletAuth,
        reason: record.reason,
        duration_ms: Math.round(durationMs * 1000) / 1000,
      },
      "request",
    );
  }
}
