import type { ServerResponse } from "node:http";
import type { RequestRecord } from "../observability/request-record.js";

/**
 * The requests being answered now, for the drain on SIGTERM (docs/operations.md, Stopping):
 * the drain waits until this set is empty, and names each request still in it when the drain
 * time runs out. A request is in it from its head to the close of its response.
 */
export class InFlightRequests {
  /**
   * An array with swap-removal, not a Map: a Map that takes and drops every request rehashes
   * every few dozen of them, and each table it leaves behind (kept for iterators, in the old
   * generation) still holds the requests then in flight, so every request's objects were
   * carried into the old generation and collected only by full GCs (a pass-through request
   * cost a third more CPU, and RSS grew between full GCs).
   */
  private readonly open: InFlight[] = [];
  private waiters: (() => void)[] = [];

  /** The returned token goes to `finished` from the response's `close`. */
  add(res: ServerResponse, record: RequestRecord): InFlight {
    const entry: InFlight = { res, record, index: this.open.length };
    this.open.push(entry);
    return entry;
  }

  finished(entry: InFlight): void {
    if (this.open[entry.index] !== entry) return;
    const last = this.open.pop() as InFlight;
    if (last !== entry) {
      this.open[entry.index] = last;
      last.index = entry.index;
    }
    entry.index = -1;
    if (this.open.length > 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  get size(): number {
    return this.open.length;
  }

  /** Requests open now, with their responses. */
  entries(): [ServerResponse, RequestRecord][] {
    return this.open.map((e) => [e.res, e.record]);
  }

  /** Resolves once no request is open (at once when none is). */
  whenEmpty(): Promise<void> {
    if (this.open.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

export interface InFlight {
  readonly res: ServerResponse;
  readonly record: RequestRecord;
  index: number;
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
