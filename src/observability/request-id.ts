import { randomUUID } from "node:crypto";
import { secretKind } from "../secrets/redact.js";

/**
 * The request's id: an incoming `X-Request-Id` is kept, as Envoy keeps it, so one id follows
 * the request through the app's logs, the proxy's log line, the ledger and the answer. It is
 * app-chosen text bound for logs and the ledger, so only a bounded, plain one is kept
 * (docs/operations.md, Logs); anything else (too long, odd characters, several values, a
 * seed-shaped string) gets a freshly minted UUID.
 */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._~:+/=-]{1,128}$/;

export function acceptedRequestId(header: string | string[] | undefined): string | undefined {
  if (typeof header !== "string") return undefined;
  const id = header.trim();
  if (!SAFE_REQUEST_ID.test(id) || secretKind(id) === "stellar_seed") return undefined;
  // The mark of `stoka-proxy pay`'s own payments: an app's id must not make a proxy payment
  // look like one (`pay --failed` finishes those, giving their budget back).
  if (isPayCommandId(id)) return undefined;
  return id;
}

export function requestIdFor(header: string | string[] | undefined): string {
  return acceptedRequestId(header) ?? randomUUID();
}

/** Marks a payment `stoka-proxy pay` opened: its request id (the same in every row). */
export const PAY_REQUEST_PREFIX = "pay-command:";

/** A request id that `stoka-proxy pay` mints, or one posing as it (docs/operations.md). */
export function isPayCommandId(id: string): boolean {
  return id.toLowerCase().startsWith(PAY_REQUEST_PREFIX);
}
