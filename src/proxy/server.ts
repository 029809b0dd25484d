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
import { requestIdFor } from "../observability/request-id.js";
import { ProxyMetrics } from "../observability/metrics.js";
import type { PaymentControls } from "../observability/admin.js";
import { reconcile, reconcilerDeps } from "../payment/reconciler.js";
import { openStores } from "../payment/stores.js";
import type { Stores } from "../payment/stores.js";
import type { ProxyConfig } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import { BudgetStoreUnavailable } from "../budget/store.js";
import { RequestLineWriter } from "../observability/request-line.js";
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
import type { TunnelDestination } from "./connections.js";
import { hasLoop, viaToken } from "../http/hop-by-hop.js";
import { findPaidHost } from "../config/paid-hosts.js";
import { Passthrough } from "./passthrough.js";
import { PayeeRegistry } from "../payment/payees.js";
import { QuoteAhead } from "../payment/quote-ahead.js";
import { StokaClient } from "../stoka/client.js";
import type { Resolver } from "./pinned-lookup.js";
import { parseRequestTarget } from "../http/request-target.js";
import { rawErrorResponse, sendError } from "./error-answers.js";
import { MAX_HEADER_LINES, requestFramingProblem } from "./request-checks.js";
import { answerAndClose } from "./socket-lifetime.js";
import { targetsListener } from "./self-target.js";
import { handleUpgrade } from "./upgrade.js";
import { UpstreamClient } from "../http/upstream-client.js";
import { reconcileMismatchEvent } from "../operator/notify/events.js";
import { operatorParts } from "./operator-wiring.js";
import type { OperatorParts } from "./operator-wiring.js";
import type { EventStore } from "../operator/security/event-store.js";
import { LiveConfig } from "../config/live-config.js";
import { planReload } from "../config/reload-plan.js";
import type { ReloadPlan } from "../config/reload-plan.js";
import { openListenerProblem } from "../config/open-listener.js";
import { InFlightRequests } from "./drain.js";
import { scrubSecrets } from "../secrets/redact.js";
import type { DrainSummary } from "./drain.js";
import { Resilience } from "./resilience.js";
import {
  ApprovalRegistry,
  DEFAULT_MAX_PENDING_APPROVALS_PER_CLIENT,
} from "../operator/approvals/registry.js";
import { approvalMetrics } from "../operator/approvals/metrics.js";

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
  /** Where security events are kept; the SQLite file's `security_events` table by default. */
  events?: EventStore;
}

/** What a reload came to (the admin endpoint's answer). */
export type ReloadOutcome =
  { ok: true; applied: string[]; needsRestart: string[] } | { ok: false; error: string };

function shuttingDown(): StokaProxyError {
  return new StokaProxyError(
    "shutting_down",
    "the proxy is shutting down and takes no new requests",
    "retry on a new connection (another replica, or this one once restarted)",
  );
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
  /** Notifications, security events and the status page (operator-wiring.ts). */
  readonly operator: OperatorParts;
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
  /** The configuration requests read; a reload swaps it (docs/operations.md, Reloading). */
  readonly live: LiveConfig;
  private readonly inFlight = new InFlightRequests();
  private readonly requestLines: RequestLineWriter;
  private listening: AddressInfo | undefined;
  /** Set at SIGTERM: new requests are answered 503 shutting_down (docs/operations.md, Stopping). */
  private draining = false;
  private refusedWhileDraining = 0;
  private closing: Promise<void> | undefined;

  constructor(config: ProxyConfig, deps: ProxyDeps) {
    this.requestLines = new RequestLineWriter(deps.logger);
    const upstream = new UpstreamClient({
      timeoutMs: config.upstream.timeoutMs,
      connectTimeoutMs: config.upstream.connectTimeoutMs,
      caPems: config.upstream.caPems,
    });
    const signer =
      "signer" in deps
        ? deps.signer
        : createPaymentSigner(config.wallet, config.network, (msg, facts) => deps.logger.warn(facts, msg));
    this.stores = deps.stores ?? openStores(config, deps.logger);
    // One line when the budget store's state is found lost, one when it is restored.
    this.stores.budgets.watch?.({
      lost: (reason) => deps.logger.warn({ reason }, "budget store lost its state: nothing is paid"),
      restored: (epoch, origin) =>
        deps.logger.info({ epoch, origin }, "budget store restored by an operator: payments resume"),
    });
    const now = deps.now ?? Date.now;
    const live = new LiveConfig(config, now());
    this.live = live;
    const via = viaToken(randomBytes(4).toString("hex"));
    const resilience = new Resilience(config.resilience, config.payments, deps.logger, now);
    // The manifest, challenges and usage go through the hosts' rate limiters too.
    const stoka = new StokaClient(resilience.limited(upstream), via);
    const registry = deps.registry ?? new Registry();
    const approvals = new ApprovalRegistry({
      now,
      maxPerClient: DEFAULT_MAX_PENDING_APPROVALS_PER_CLIENT,
      ...(config.metricsEnabled ? { observer: approvalMetrics(registry) } : {}),
    });
    this.ctx = {
      // Read at each use: a reload's new values apply from the next request on.
      get config() {
        return live.current;
      },
      logger: deps.logger,
      upstream,
      stoka,
      payees: new PayeeRegistry(stoka, { network: config.network, asset: config.asset }),
      quotes: new QuoteAhead((base) => stoka.pricing(base), now),
      book: new PaymentBook(this.stores.payments, deps.logger, now, config.leaseMs),
      signer,
      messageSigner: "messageSigner" in deps ? deps.messageSigner : createMessageSigner(config.wallet),
      via,
      now,
      approvals,
      resilience,
      paidHost: (host, port) => findPaidHost(live.current.paidHosts, host, port),
      emit: (event) => this.operator.events.emit(event),
      securityEvent: (code, facts) => this.operator.events.securityEvent(code, facts),
    };
    this.registry = registry;
    this.metrics = config.metricsEnabled
      ? new ProxyMetrics(
          this.registry,
          () => live.current.budgets,
          this.stores.budgets,
          () => this.stores.payments.indeterminateCount(),
          config.asset,
          config.network,
          now,
          config.walletAuth.flatMap((r) => (r.route ? [r.route] : [])),
        )
      : undefined;
    this.operator = operatorParts({
      config,
      logger: deps.logger,
      now,
      stores: this.stores,
      registry: this.registry,
      caCertPath: () => this.caCertPath,
      ...(deps.events ? { events: deps.events } : {}),
      approvals: {
        registry: approvals,
        token: () => live.current.adminToken,
        configured: () => live.current.budgets.some((b) => b.approval !== undefined),
      },
    });
    this.ctx.resilience.metrics = this.metrics;
    this.metrics?.watchResilience(this.ctx.resilience.view());
    this.passthrough = new Passthrough(
      upstream,
      this.ctx.via,
      config.upstream.timeoutMs,
      (kind) => this.metrics?.upstreamErrors.inc({ kind }),
      () => live.current.egress,
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
    // Explicit, so request-checks.ts knows when a head may have lost lines.
    this.http.maxHeadersCount = MAX_HEADER_LINES;
    this.inner.maxHeadersCount = MAX_HEADER_LINES;
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
    this.http.on("connect", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if (this.draining) {
        this.refusedWhileDraining += 1;
        socket.on("error", () => socket.destroy());
        return answerAndClose(socket, rawErrorResponse(shuttingDown()));
      }
      handleConnect(
        {
          ctx: this.ctx,
          serveTunnel: (socket, session) => this.serveTunnel(socket, session),
          ...(this.interceptor ? { interceptTls: this.interceptor } : {}),
          onTunnel: (kind) => this.metrics?.tunnels.inc({ kind }),
          isSelf: (t) => this.pointsAtSelf(t.host, t.port),
          ...(deps.resolve ? { resolve: deps.resolve } : {}),
          trackUpstream: (upstream, client, destination) => {
            this.connections.trackUpstream(upstream);
            this.connections.trackTunnel(client, destination, upstream);
            // Resolved under the policy before a reload that came meanwhile: judged by the new one.
            this.connections.closeTunnelsRefusedBy(this.live.current.egress);
          },
        },
        req,
        socket,
        head,
      );
    });
    // Upgrade (WebSocket) requests arrive as raw sockets: answered in upgrade.ts, never left hanging.
    const upgrades = {
      ctx: this.ctx,
      passthrough: this.passthrough,
      isSelf: (h: string, p: number) => this.pointsAtSelf(h, p),
      trackTunnel: (client: Duplex, destination: TunnelDestination) =>
        this.connections.trackTunnel(client, destination),
      tunnelAddress: (client: Duplex, address: string) => {
        this.connections.tunnelAddress(client, address);
        // Connected under the policy before a reload that came meanwhile: judged by the new one.
        this.connections.closeTunnelsRefusedBy(this.live.current.egress);
      },
    };
    this.http.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      handleUpgrade(upgrades, req, socket, head, false),
    );
    this.inner.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      handleUpgrade(upgrades, req, socket, head, true),
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
    // Payments a previous run left open were interrupted: their outcome is unknown. A shared
    // database also holds the open payments of replicas that died: they are looked for again
    // on every sweep, and a database that is down now only delays it (payments are refused
    // meanwhile), where a local file that cannot be read stops the start.
    const shared = this.stores.payments.kind === "postgres";
    await this.recover().catch((e: unknown) => {
      if (!shared || !(e instanceof BudgetStoreUnavailable)) throw e;
      this.ctx.logger.warn({ err: e.message }, "payment store unavailable: recovery waits for it");
    });
    this.sweeper = setInterval(() => {
      const sweep = async () => {
        if (shared) await this.recover();
        this.operator.events.indeterminate(await this.ctx.book.expireLeases());
      };
      sweep().catch((e: unknown) =>
        this.ctx.logger.warn({ err: (e as Error).message }, "lease sweep failed"),
      );
    }, 10_000);
    this.sweeper.unref();
    const every = this.ctx.config.reconcile.intervalSeconds;
    if (every > 0) {
      this.reconciler = setInterval(() => {
        reconcile(reconcilerDeps(this.ctx.config, this.ctx), this.ctx.config.reconcile.days, true).then(
          (days) => {
            for (const d of days.filter((x) => x.status === "mismatch")) {
              this.ctx.logger.warn(
                { reconcile: d.date, difference: d.difference.toString() },
                "ledger and stoka disagree",
              );
              this.ctx.emit(reconcileMismatchEvent({ ...d, atMs: this.ctx.now() }));
            }
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
    this.listening = addr;
    this.url = `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
    return this.url;
  }

  private async recover(): Promise<void> {
    // Released when never handed to a socket, else unknown (docs/operations.md, crash recovery).
    const { released, indeterminate } = await this.ctx.book.recoverInterrupted();
    if (released.length > 0)
      this.ctx.logger.info(
        { payments: released },
        "payments interrupted by the last stop before their header was sent were released (nothing was sent)",
      );
    if (indeterminate.length > 0) {
      this.ctx.logger.warn(
        { payments: indeterminate },
        "payments interrupted by the last stop after their header was sent are now indeterminate; run `stoka-proxy reconcile`",
      );
      this.operator.events.indeterminate(indeterminate);
    }
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

  /** The kill switch and dry run, for the admin endpoints. */
  paymentControls(): PaymentControls {
    const r = this.ctx.resilience;
    return {
      token: this.ctx.config.adminToken,
      paymentSwitch: r.paymentSwitch,
      onFlip: (changes) => r.noteFlips(changes),
      now: this.ctx.now,
    };
  }

  /** Why the proxy cannot pay right now (for /readyz); empty when it can. */
  async readiness(): Promise<string[]> {
    if (this.draining) return ["shutting down"];
    const reasons: string[] = [];
    if (!this.ctx.signer) reasons.push("no wallet configured: 402s are passed back unpaid");
    const store = await this.stores.payments.check();
    if (store) reasons.push(store);
    return reasons;
  }

  /**
   * The drain (docs/operations.md, Stopping): no new connection is accepted and no new request
   * served (503 shutting_down, Connection: close); idle keep-alive connections are closed; the
   * requests in flight get up to `drainMs` to finish, each told its connection closes after.
   * Then, or when `cutNow` settles first (a second signal), whatever is still open is cut, each
   * cut request logged with its request_id, and everything is closed. A payment cut mid-flight
   * keeps the ledger row it has (reserved or sent); the next start turns it indeterminate.
   */
  async shutdown(
    drainMs: number,
    cutNow: Promise<unknown> = new Promise(() => undefined),
  ): Promise<DrainSummary> {
    const began = Date.now();
    this.draining = true;
    // Nobody will approve a payment of a stopping proxy: each one waiting is refused, released.
    this.ctx.approvals.cancelAll("the proxy is shutting down");
    const inFlightAtStart = this.inFlight.size;
    this.ctx.logger.info(
      {
        in_flight: inFlightAtStart,
        open_connections: this.connections.open,
        drain_seconds: drainMs / 1000,
      },
      "draining: no new connections or requests; waiting for the requests in flight",
    );
    // Stops accepting: a new connection is refused by the OS from here on.
    this.server.close();
    for (const [res] of this.inFlight.entries()) if (!res.headersSent) res.shouldKeepAlive = false;
    for (const srv of [this.http, this.inner]) srv.closeIdleConnections();
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      this.inFlight.whenEmpty().then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), drainMs))),
      cutNow.then(
        () => false,
        () => false,
      ),
    ]);
    clearTimeout(timer);
    const cut = finished ? [] : this.inFlight.entries();
    for (const [, record] of cut) {
      this.ctx.logger.warn(
        {
          request_id: record.requestId,
          mode: record.mode,
          method: record.method,
          host: record.host,
          route: record.route,
          client: record.client,
          payment_id: record.paymentId,
        },
        record.paymentId
          ? "cut by shutdown with a payment in flight: its ledger row stays open, the next start marks it indeterminate"
          : "cut by shutdown: the drain time ran out",
      );
    }
    const closedConnections = this.connections.open;
    await this.close();
    const summary: DrainSummary = {
      completed: inFlightAtStart - cut.length,
      cut: cut.length,
      refused: this.refusedWhileDraining,
      closedConnections,
      durationMs: Date.now() - began,
    };
    this.ctx.logger.info(
      {
        completed: summary.completed,
        cut: summary.cut,
        refused: summary.refused,
        closed_connections: summary.closedConnections,
        duration_ms: summary.durationMs,
      },
      "drained: stores closed",
    );
    return summary;
  }

  /**
   * Applies a newly loaded configuration (docs/operations.md, Reloading): the live fields from
   * the next request on, the others kept until a restart and named. `load` throws a
   * StokaProxyError for an invalid configuration; the one in use then keeps serving.
   */
  reload(load: () => ProxyConfig, trigger: string): ReloadOutcome {
    const current = this.live.current;
    let plan: ReloadPlan;
    try {
      const next = load();
      // Checked against the listener in use, whatever the new file says about it.
      const open = openListenerProblem(current.listen.host, next.clients.length, next.allowAnonymous);
      if (open)
        throw new StokaProxyError(
          "config_invalid",
          `clients: ${open}`,
          "keep at least one client token, or set allow_anonymous: true",
        );
      plan = planReload(current, next);
    } catch (e) {
      const error =
        e instanceof StokaProxyError
          ? `${e.message} (${e.hint})`
          : scrubSecrets(`cannot load: ${(e as Error).message}`);
      this.metrics?.configReloads.inc({ result: "failure" });
      this.ctx.logger.error(
        { trigger, error },
        "configuration reload refused: the configuration in use keeps serving",
      );
      return { ok: false, error };
    }
    const at = this.ctx.now();
    this.live.replace(plan.config, at);
    if (plan.applied.includes("egress")) {
      this.passthrough.resetPools();
      const closed = this.connections.closeTunnelsRefusedBy(plan.config.egress);
      if (closed > 0)
        this.ctx.logger.warn(
          { trigger, tunnels: closed },
          "closed open tunnels the new egress policy denies",
        );
    }
    this.metrics?.configReloads.inc({ result: "success" });
    this.metrics?.configLoadedAt.set(at / 1000);
    this.ctx.logger.info(
      { trigger, applied: plan.applied, needs_restart: plan.needsRestart },
      plan.needsRestart.length > 0
        ? "configuration reloaded; some changes need a restart and keep their old value"
        : "configuration reloaded",
    );
    return { ok: true, applied: plan.applied, needsRestart: plan.needsRestart };
  }

  /** Stops at once: every client socket and tunnel is destroyed, so this never waits on a peer. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
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
    this.ctx.approvals.cancelAll("the proxy is stopping");
    await this.operator.events.close();
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
    if (this.draining) {
      // A new request on a connection kept alive from before the drain: refused, and closed.
      this.refusedWhileDraining += 1;
      req.resume();
      res.shouldKeepAlive = false;
      return sendError(res, shuttingDown());
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
    const inFlight = this.inFlight.add(res, record);
    res.once("close", () => {
      this.inFlight.finished(inFlight);
      this.logLine(record, res, started);
    });
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
      // The token was checked at the CONNECT; a reload may since have removed its client.
      const { clients } = this.ctx.config;
      if (clients.length > 0 && !clients.some((c) => c.name === tunnel.client)) {
        res.shouldKeepAlive = false;
        throw new StokaProxyError(
          "proxy_auth_required",
          `client ${tunnel.client} is no longer configured on this proxy`,
          "open a new tunnel with a current client token",
        );
      }
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
      if (target.form === "absolute") record.host = target.host; // for the security event
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
    // The address read once at listen: server.address() is a getsockname(2) per request.
    const addr = this.listening;
    return addr ? targetsListener(addr, host, port) : false;
  }

  private logLine(record: RequestRecord, res: http.ServerResponse, started: bigint): void {
    record.status = res.statusCode;
    const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
    this.metrics?.observe(record, res.statusCode, durationMs / 1000);
    const errorCode = res.getHeader("x-stoka-proxy-error");
    this.operator.events.requestFinished(
      record,
      res.statusCode,
      typeof errorCode === "string" ? errorCode : undefined,
    );
    this.requestLines.write({ record, status: res.statusCode, durationMs });
  }
}
