import type { PaymentBook } from "../payment/book.js";
import type { PaidHost, PaidHostEntry, ProxyConfig } from "../config/config.js";
import type { Logger } from "../observability/logger.js";
import type { MessageSigner } from "../wallet/message-signer.js";
import type { PaymentSigner } from "../wallet/payment-signer.js";
import type { PayeeRegistry } from "../payment/payees.js";
import type { QuoteAhead } from "../payment/quote-ahead.js";
import type { StokaClient } from "../stoka/client.js";
import type { UpstreamClient } from "../http/upstream-client.js";
import type { NotificationEvent } from "../operator/notify/events.js";
import type { SecurityEventCode } from "../operator/security/codes.js";
import type { ApprovalRegistry } from "../operator/approvals/registry.js";
import type { Resilience } from "./resilience.js";

/** What every traffic path shares. Built once by server.ts. */
export interface ProxyContext {
  config: ProxyConfig;
  logger: Logger;
  /** Sends the apps' requests to paid hosts. */
  upstream: UpstreamClient;
  /** The proxy's own calls to stoka's API (manifest, challenges, usage). */
  stoka: StokaClient;
  payees: PayeeRegistry;
  /** Quote-ahead payments for the routes paid hosts opted in (payment/quote-ahead.ts). */
  quotes: QuoteAhead;
  /** Budget reservations and ledger rows for each payment. */
  book: PaymentBook;
  signer: PaymentSigner | undefined;
  /** Signs wallet-auth challenges; undefined when no key or sign command is configured. */
  messageSigner: MessageSigner | undefined;
  /** Rate limiters, retries, circuit breakers, the kill switch and dry run, idempotency. */
  resilience: Resilience;
  /** Payments waiting for a person's approval, in this process (approval-gate.ts). */
  approvals: ApprovalRegistry;
  /** Our Via token; a request carrying it is a loop. */
  via: string;
  now: () => number;
  /** The paid_hosts entry for this authority (config/paid-hosts.ts), for every traffic path. */
  paidHost(host: string, port: number): PaidHostEntry | undefined;
  /**
   * Tells the operator (webhook notifications, docs/webhooks.md): the proxy's own events go
   * here, and so can breakers and the kill switch. Synchronous, bounded, never throws.
   */
  emit(event: NotificationEvent): void;
  /** Records a security event (docs/operations.md, Security events). Synchronous, bounded, never throws. */
  securityEvent(
    code: SecurityEventCode,
    facts: { client?: string; host?: string; route?: string; detail?: string },
  ): void;
}

/** A request to a paid host: the host as this request reaches it, and the full upstream URL. */
export interface PaidTarget {
  host: PaidHost;
  url: URL;
}
