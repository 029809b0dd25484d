/**
 * Security events: answers the proxy gave because a request or a 402 was not to be trusted
 * (docs/operations.md, Security events). Each has a stable `code` (the error code the answer
 * carried, so a log line, a metric and a stored event name it the same way) and only bounded,
 * public facts: a configured client name, a host name, a route name, and a short reason written
 * by the proxy. Never a URL, a header, a token or a body. Pure.
 */
export const SECURITY_EVENT_CODES = [
  /** A 402 asked for a payee, asset, network or terms the proxy does not trust (402). */
  "terms_rejected",
  /** A forward or CONNECT request without a valid client token (407). */
  "proxy_auth_required",
  /** A gateway request without a valid client token (401). */
  "client_auth_required",
  /** A request or tunnel to a host the egress policy does not allow (403). */
  "egress_denied",
  /** The admin listener's status page was asked for without the metrics token (401). */
  "admin_auth_required",
  /** A call to the signer role without a valid pod token (401; docs/security.md, Keyless sidecars). */
  "signer_unauthorized",
  /** The signer role refused to sign a wallet-auth message for a pod token (403). */
  "signer_refused",
] as const;
export type SecurityEventCode = (typeof SECURITY_EVENT_CODES)[number];

export function isSecurityEventCode(code: unknown): code is SecurityEventCode {
  return typeof code === "string" && (SECURITY_EVENT_CODES as readonly string[]).includes(code);
}

export interface SecurityEvent {
  code: SecurityEventCode;
  atMs: number;
  /** The configured client name, or `anonymous`/the default client when none was proven. */
  client: string;
  /** The host asked for (an authority), or "" when there was none. */
  host: string;
  /** The route name (`store`, `other`, …), or "" outside the traffic paths. */
  route: string;
  /** The proxy's own reason, cut to MAX_DETAIL characters. */
  detail: string;
}

/** A stored event: its row id (increasing in write order) added. */
export interface StoredSecurityEvent extends SecurityEvent {
  id: number;
}

export const MAX_DETAIL = 300;
const MAX_FIELD = 255;

/** Control characters out, lengths bounded: what a store and a terminal may safely hold. */
function clean(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is removed
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, " ");
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function securityEvent(
  code: SecurityEventCode,
  atMs: number,
  facts: { client?: string; host?: string; route?: string; detail?: string },
): SecurityEvent {
  return {
    code,
    atMs,
    client: clean(facts.client ?? "", MAX_FIELD),
    host: clean(facts.host ?? "", MAX_FIELD),
    route: clean(facts.route ?? "", MAX_FIELD),
    detail: clean(facts.detail ?? "", MAX_DETAIL),
  };
}
