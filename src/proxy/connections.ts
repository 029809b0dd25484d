import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { EgressPolicy } from "../config/config.js";
import { StokaProxyError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import { addressRefusal, egressRefusal } from "./egress.js";
import { rawErrorResponse } from "./error-answers.js";
import { answerAndClose } from "./socket-lifetime.js";

/**
 * Every socket the listener accepted, from accept to close, whatever it became (keep-alive
 * HTTP, a blind tunnel, a paid host's tunnel under TLS): the caps are counted here and close()
 * destroys them all. Node's http.Server forgets a socket once it turns into a CONNECT tunnel,
 * so its own bookkeeping (closeAllConnections, getConnections) cannot do either.
 *
 * A client is the remote address: tokens arrive per request, a connection carries none.
 */
export interface ConnectionLimits {
  maxTotal: number;
  maxPerClient: number;
}

export type Admission = "admitted" | "over_total" | "over_client";

/** Where an open tunnel (blind CONNECT or WebSocket) goes, as egress judged it when it opened. */
export interface TunnelDestination {
  host: string;
  port: number;
  /** The address connected to, when the proxy resolved it itself (blind tunnels). */
  address?: string;
}

/** Whether one more connection from a client fits, given what is open now. */
export function admission(openTotal: number, openFromClient: number, limits: ConnectionLimits): Admission {
  if (openTotal >= limits.maxTotal) return "over_total";
  if (openFromClient >= limits.maxPerClient) return "over_client";
  return "admitted";
}

/** `::ffff:127.0.0.1` and `127.0.0.1` are one client. */
export function clientAddress(socket: { remoteAddress?: string | undefined }): string {
  const address = socket.remoteAddress ?? "unknown";
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}

/** At most one log line per this many ms about refused connections (a flood must not flood the log). */
const REFUSAL_LOG_EVERY_MS = 10_000;

/**
 * Refused sockets that may linger (see answerAndClose) at once. Past it a refused socket is
 * released as soon as its answer is written: a flood past the caps must not hold a file
 * descriptor per attacker for a second each and starve the proxy of fds.
 */
const MAX_LINGERING_REFUSALS = 32;

export class ClientConnections {
  /** Admitted and refused (still lingering) sockets alike. */
  private readonly sockets = new Set<Socket>();
  /** Blind tunnels' sockets to their targets: not counted, destroyed with the rest. */
  private readonly upstreams = new Set<Socket>();
  /** Open tunnels by their client socket: judged again when a reload changes egress. */
  private readonly tunnels = new Map<Duplex, TunnelDestination & { upstream?: Socket }>();
  private readonly perClient = new Map<string, number>();
  private admitted = 0;
  private refusedSinceLog = 0;
  private lingering = 0;
  private lastRefusalLog = 0;

  constructor(
    private readonly limits: ConnectionLimits,
    private readonly logger: Logger,
  ) {}

  /** Tracks `socket` until it closes; counts it against the caps only when admitted. */
  admit(socket: Socket): Admission {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    const client = clientAddress(socket);
    const verdict = admission(this.admitted, this.perClient.get(client) ?? 0, this.limits);
    if (verdict !== "admitted") return verdict;
    this.admitted += 1;
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    socket.once("close", () => {
      this.admitted -= 1;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left > 0) this.perClient.set(client, left);
      else this.perClient.delete(client);
    });
    return verdict;
  }

  /**
   * Answers a connection past a cap with 503 and closes it. The answer goes out at accept,
   * before any request is read: parsing one would cost what the cap is there to save.
   */
  refuse(socket: Socket, verdict: Exclude<Admission, "admitted">): void {
    const err = new StokaProxyError(
      "too_many_connections",
      verdict === "over_total"
        ? `the proxy already has ${this.limits.maxTotal} open connections`
        : `this client already has ${this.limits.maxPerClient} open connections to the proxy`,
      "close idle connections or retry later (see connections in the config)",
    );
    const answer = rawErrorResponse(err, { "Retry-After": "1" });
    if (this.lingering < MAX_LINGERING_REFUSALS) {
      this.lingering += 1;
      socket.once("close", () => (this.lingering -= 1));
      answerAndClose(socket, answer);
    } else {
      socket.on("error", () => socket.destroy());
      socket.end(answer, () => socket.destroy());
    }
    this.refusedSinceLog += 1;
    const now = Date.now();
    if (now - this.lastRefusalLog >= REFUSAL_LOG_EVERY_MS) {
      this.logger.warn(
        {
          error_code: err.code,
          cap: verdict,
          client_address: clientAddress(socket),
          refused: this.refusedSinceLog,
        },
        "refused connections past the connection cap",
      );
      this.lastRefusalLog = now;
      this.refusedSinceLog = 0;
    }
  }

  trackUpstream(socket: Socket): void {
    this.upstreams.add(socket);
    socket.once("close", () => this.upstreams.delete(socket));
  }

  /** A tunnel egress allowed; `upstream` is destroyed with the client when a reload refuses it. */
  trackTunnel(client: Duplex, destination: TunnelDestination, upstream?: Socket): void {
    this.tunnels.set(client, { ...destination, ...(upstream ? { upstream } : {}) });
    client.once("close", () => this.tunnels.delete(client));
  }

  /**
   * After a reload tightened egress: every open tunnel the new policy would refuse is closed
   * (docs/operations.md, Reloading). Without this a denied host stays reachable for as long as
   * a tunnel opened before the reload stays busy. Returns how many were closed.
   */
  closeTunnelsRefusedBy(policy: EgressPolicy): number {
    let closed = 0;
    for (const [client, t] of [...this.tunnels]) {
      const refused =
        egressRefusal(policy, t.host, t.port) ?? (t.address ? addressRefusal(policy, t.address) : null);
      if (refused === null) continue;
      this.tunnels.delete(client);
      client.destroy();
      t.upstream?.destroy();
      closed += 1;
    }
    return closed;
  }

  /** Sockets open now (admitted or refused and lingering). */
  get open(): number {
    return this.sockets.size;
  }

  /** Destroys every socket, both sides of every tunnel. */
  destroyAll(): void {
    for (const socket of [...this.sockets, ...this.upstreams]) socket.destroy();
  }
}
