import type { PaymentBook } from "../ledger/payment-book.js";
import type { PaidHostEntry, ProxyConfig } from "../config/config.js";
import type { Logger } from "../observability/logger.js";
import type { MessageSigner } from "../stellar/message-signer.js";
import type { PaymentSigner } from "../x402/signer.js";
import type { PayeeRegistry } from "./payees.js";
import type { UpstreamClient } from "../http/upstream-client.js";

/** What every traffic path shares. Built once by server.ts. */
export interface ProxyContext {
  config: ProxyConfig;
  logger: Logger;
  upstream: UpstreamClient;
  payees: PayeeRegistry;
  /** Budget reservations and ledger rows for each payment. */
  book: PaymentBook;
  signer: PaymentSigner | undefined;
  /** Signs wallet-auth challenges; undefined when no key or sign command is configured. */
  messageSigner: MessageSigner | undefined;
  /** Our Via token; a request carrying it is a loop. */
  via: string;
  now: () => number;
  /** The paid_hosts entry for this authority (paid-host-lookup.ts), for every traffic path. */
  paidHost(host: string, port: number): PaidHostEntry | undefined;
}

/** The facts of one inbound request, filled in along the way and logged as one line. */
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
  reason?: string;
}
