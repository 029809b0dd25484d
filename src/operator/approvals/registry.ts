import { randomBytes } from "node:crypto";

/**
 * The payments waiting for a person (docs/operations.md, Approvals), kept in this process:
 * with several replicas, each one's status page, admin API and `stoka-proxy approvals` show
 * the payments waiting on that replica only. Bounded: at most `maxPending` wait at once (the
 * next is refused at once), and each wait ends by its deadline whatever happens.
 *
 *   wait(facts) ──▶ pending ──approve──▶ approved   (the payment is signed and sent)
 *                          ├─deny─────▶ denied     (released, 402 approval_denied)
 *                          ├─deadline─▶ timeout    (released, 402 approval_timeout)
 *                          ├─app left─▶ client_gone (released)
 *                          └─shutdown─▶ cancelled  (released, 402 approval_denied)
 */
export type ApprovalOutcome = "approved" | "denied" | "timeout" | "client_gone" | "cancelled";
export const APPROVAL_OUTCOMES: readonly ApprovalOutcome[] = [
  "approved",
  "denied",
  "timeout",
  "client_gone",
  "cancelled",
];

/** What the person deciding sees: names, ids, an amount, the path without its query. */
export interface ApprovalFacts {
  paymentId: string;
  requestId: string;
  route: string;
  client: string;
  method: string;
  /** The paid host (an authority). */
  host: string;
  /** The request's path, without the query (it may carry credentials). */
  path: string;
  amount: bigint;
  budgets: string[];
  /** Why it waits, one sentence per budget that asks. */
  reasons: string[];
}

export interface PendingApproval extends ApprovalFacts {
  id: string;
  requestedAtMs: number;
  deadlineMs: number;
}

export interface ApprovalDecision {
  outcome: ApprovalOutcome;
  /** Who decided (`admin`, `status page`), absent for a timeout or a departure. */
  by?: string;
  reason: string;
}

export interface ApprovalObserver {
  requested?(p: PendingApproval): void;
  decided?(p: PendingApproval, d: ApprovalDecision): void;
  /** The number waiting now, after each change. */
  pending?(n: number): void;
}

export interface ApprovalRegistryOptions {
  now?: () => number;
  maxPending?: number;
  observer?: ApprovalObserver;
}

export const DEFAULT_MAX_PENDING_APPROVALS = 100;

interface Entry {
  approval: PendingApproval;
  settle: (d: ApprovalDecision) => void;
}

export class ApprovalRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly maxPending: number;
  private readonly observer: ApprovalObserver;

  constructor(o: ApprovalRegistryOptions = {}) {
    this.now = o.now ?? Date.now;
    this.maxPending = o.maxPending ?? DEFAULT_MAX_PENDING_APPROVALS;
    this.observer = o.observer ?? {};
  }

  /**
   * Registers a payment and waits for its decision, at most `timeoutMs`. `onGone` subscribes to
   * the app leaving (returns the unsubscribe). Null when too many already wait.
   */
  wait(
    facts: ApprovalFacts,
    timeoutMs: number,
    onGone: (left: () => void) => () => void,
  ): { approval: PendingApproval; decision: Promise<ApprovalDecision> } | null {
    if (this.entries.size >= this.maxPending) return null;
    const requestedAtMs = this.now();
    const approval: PendingApproval = {
      ...facts,
      id: randomBytes(6).toString("hex"),
      requestedAtMs,
      deadlineMs: requestedAtMs + timeoutMs,
    };
    let settle!: (d: ApprovalDecision) => void;
    const decision = new Promise<ApprovalDecision>((resolve) => {
      let done = false;
      let unsubscribe = (): void => undefined;
      const timer = setTimeout(
        () =>
          settle({
            outcome: "timeout",
            reason: `nobody approved the payment within ${timeoutMs / 1000} s`,
          }),
        timeoutMs,
      );
      settle = (d) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        unsubscribe();
        this.entries.delete(approval.id);
        this.tell((o) => o.decided?.(approval, d));
        this.tell((o) => o.pending?.(this.entries.size));
        resolve(d);
      };
      this.entries.set(approval.id, { approval, settle: (d) => settle(d) });
      unsubscribe = onGone(() =>
        settle({ outcome: "client_gone", reason: "the app closed its connection while the payment waited" }),
      );
    });
    this.tell((o) => o.requested?.(approval));
    this.tell((o) => o.pending?.(this.entries.size));
    return { approval, decision };
  }

  /** The payments waiting now, oldest first. */
  list(): PendingApproval[] {
    return [...this.entries.values()]
      .map((e) => e.approval)
      .sort((a, b) => a.requestedAtMs - b.requestedAtMs);
  }

  get size(): number {
    return this.entries.size;
  }

  /** A person's decision; undefined when nothing waits under that id (decided, timed out, gone). */
  decide(id: string, approve: boolean, by: string, reason = ""): PendingApproval | undefined {
    const e = this.entries.get(id);
    if (!e) return undefined;
    const said = reason.trim().slice(0, 300);
    e.settle({
      outcome: approve ? "approved" : "denied",
      by,
      reason: approve
        ? `approved by ${by}${said ? `: ${said}` : ""}`
        : `denied by ${by}${said ? `: ${said}` : ""}`,
    });
    return e.approval;
  }

  /** Every wait ends now, refused (the proxy is shutting down). */
  cancelAll(reason: string): void {
    for (const e of [...this.entries.values()]) e.settle({ outcome: "cancelled", reason });
  }

  private tell(fn: (o: ApprovalObserver) => void): void {
    try {
      fn(this.observer);
    } catch {
      // an observer's failure is not the payment's
    }
  }
}
