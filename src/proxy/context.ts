import type { PaymentBook } from "../payment/book.js";
import type { PaidHost, PaidHostEntry, ProxyConfig } from "../config/config.js";
import type { Logger } from "../observability/logger.js";
import type { MessageSigner } from "../wallet/message-signer.js";
import type { PaymentSigner } from "../wallet/payment-signer.js";
import type { PayeeRegistry } from "../payment/payees.js";
import type { StokaClient } from "../stoka/client.js";
import type { UpstreamClient } from "../http/upstream-client.js";
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
  /** Budget reservations and ledger rows for each payment. */
  book: PaymentBook;
  signer: PaymentSigner | undefined;
  /** Signs wallet-auth challenges; undefined when no key or sign command is configured. */
  messageSigner: MessageSigner | undefined;
  /** Rate limiters, retries, circuit breakers, the kill switch and dry run, idempotency. */
  resilience: Resilience;
  /** Our Via token; a request carrying it is a loop. */
  via: string;
  now: () => number;
  /** The paid_hosts entry for this authority (config/paid-hosts.ts), for every traffic path. */
  paidHost(host: string, port: number): PaidHostEntry | undefined;
}

/** A request to a paid host: the host as this request reaches it, and the full upstream URL. */
export interface PaidTarget {
  host: PaidHost;
  url: URL;
}
