/**
 * The facts of one inbound request, filled in along the way by the traffic paths and read
 * once, when the answer is finished, for its log line and its metrics. Labels taken from it
 * are bounded (route names, configured client names, enums), never raw URLs.
 */
export interface RequestRecord {
  requestId: string;
  mode: "forward" | "gateway" | "tunnel";
  method: string;
  host: string;
  route: string;
  client: string;
  status?: number;
  paidAtomic?: string;
  tx?: string;
  outcome?: "settled" | "settled_no_receipt" | "rejected" | "refused" | "indeterminate" | "failed";
  paymentId?: string;
  errorCode?: string;
  walletAuth?: "signed" | "signed_after_retry" | "rejected" | "failed" | "no_signer" | "app_authorization";
  challengeRequests?: number;
  /** Seconds until each upstream response's headers arrived. */
  upstreamSeconds?: number[];
  signingSeconds?: number;
  upstreamError?: "connect" | "timeout" | "dropped" | "status_5xx";
  budgetDenied?: string;
  /** terms_rejected: which pinned term the 402 broke and what it offered (public values). */
  refusedTerm?: { term: string; offered: string };
  reason?: string;
}
