import type { ServerResponse } from "node:http";
import type { RequestRecord } from "../observability/request-record.js";

/**
 * The requests being answered now, for the drain on SIGTERM (docs/operations.md, Stopping):
 * the drain waits until this set is empty, and names each request still in it when the drain
 * time runs out. A request is in it from its head to the close of its response.
 */
export class InFlightRequests {
  private readonly open = new Map<ServerResponse, RequestRecord>();
  private waiters: (() => void)[] = [];

  add(res: ServerResponse, record: RequestRecord): void {
    this.open.set(res, record);
    res.once("close", () => {
      this.open.delete(res);
      if (this.open.size === 0) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      }
    });
  }

  get size(): number {
    return this.open.size;
  }

  /** Requests open now, with their responses. */
  entries(): [ServerResponse, RequestRecord][] {
    return [...this.open.entries()];
  }

  /** Resolves once no request is open (at once when none is). */
  whenEmpty(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** What a drain came to, for its closing log line. */
export interface DrainSummary {
  /** Requests in flight when the drain began that finished on their own. */
  completed: number;
  /** Requests still running when the drain time ran out (or a second signal came), cut. */
  cut: number;
  /** Requests that arrived during the drain on open connections, answered 503 shutting_down. */
  refused: number;
  /** Client connections (keep-alive, tunnels) still open at the end, closed. */
  closedConnections: number;
  durationMs: number;
}
