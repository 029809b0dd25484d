import { STATUS_CODES } from "node:http";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { StokaProxyError, errorResponse } from "../errors.js";
import type { ErrorCode } from "../errors.js";
import { UpstreamError } from "../http/upstream-client.js";
import { sendBuffered } from "./respond.js";
import { answerAndClose } from "./socket-lifetime.js";

/**
 * Every error answer the proxy writes, in one place: the JSON error (status from the table in
 * errors.ts) on a ServerResponse or, as raw HTTP/1.1 bytes, on a socket that has none (CONNECT,
 * a connection past a cap, a request Node's parser rejected), and the 402 refusals that keep the
 * upstream's own body. Each one carries `X-Stoka-Proxy-Error: <code>`, plus the authentication
 * challenge its code calls for:
 *
 *   proxy_auth_required  (407) ─▶ Proxy-Authenticate (RFC 9110 §11.7.1)
 *   client_auth_required (401) ─▶ WWW-Authenticate   (RFC 9110 §11.6.1)
 */
export const PROXY_CHALLENGE = 'Bearer realm="stoka-proxy", Basic realm="stoka-proxy"';
export const GATEWAY_CHALLENGE = 'Bearer realm="stoka-proxy"';

/** The headers an answer with this error code carries (lower-case names). */
export function errorHeaders(code: string): Record<string, string> {
  const headers: Record<string, string> = { "x-stoka-proxy-error": code };
  if (code === "proxy_auth_required") headers["proxy-authenticate"] = PROXY_CHALLENGE;
  if (code === "client_auth_required") headers["www-authenticate"] = GATEWAY_CHALLENGE;
  return headers;
}

/** The JSON error on a response; a response already under way is cut off instead. */
export function sendError(
  res: ServerResponse,
  err: unknown,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { status, body } = errorResponse(err);
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    ...extraHeaders,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    ...errorHeaders(body.code),
  });
  res.end(payload);
}

/** `x-stoka-proxy-error` → `X-Stoka-Proxy-Error`, as raw answers spell header names. */
const titleCase = (name: string) =>
  name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase());

/**
 * The same answer as raw HTTP/1.1 bytes, for a socket that has no ServerResponse (a connection
 * refused at accept, a request Node's parser rejected, a refused CONNECT). Always
 * `Connection: close`.
 */
export function rawErrorResponse(err: unknown, extraHeaders: Record<string, string> = {}): string {
  const { status, body } = errorResponse(err);
  const payload = JSON.stringify(body);
  const headers: Record<string, string> = {
    ...extraHeaders,
    "Content-Type": "application/json",
    "Content-Length": String(Buffer.byteLength(payload)),
  };
  for (const [k, v] of Object.entries(errorHeaders(body.code))) headers[titleCase(k)] = v;
  headers.Connection = "close";
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n${lines.join("")}\r\n${payload}`;
}

/** Answers a raw socket with the error and closes it (a bounded lingering close). */
export function rejectSocket(socket: Duplex, err: unknown): void {
  answerAndClose(socket, rawErrorResponse(err));
}

/**
 * A 402 refusal that keeps an upstream's answer (its headers and a body the app can still
 * read) and says why with `X-Stoka-Proxy-Error: <code>`.
 */
export function sendRefusal(
  res: ServerResponse,
  upstream: { status: number; headers: IncomingHttpHeaders; body: Buffer },
  code: ErrorCode,
  via: string,
): void {
  sendBuffered(res, upstream.status, upstream.headers, upstream.body, errorHeaders(code), via);
}

/** A host (or the address its name resolved to) the egress policy does not allow: 403. */
export function egressDenied(reason: string): StokaProxyError {
  return new StokaProxyError("egress_denied", reason, "ask the operator to allow this host in egress");
}

/** An upstream whose answer is not HTTP (a status outside 100-599, an unasked 101): 502. */
export function notHttp(detail: string): StokaProxyError {
  return new StokaProxyError("upstream_unreachable", detail, "the host is not speaking HTTP correctly");
}

/**
 * An upstream that could not be reached or did not answer, as the app hears it: 504
 * `upstream_timeout` when it did not answer in time, else 502 `upstream_unreachable`.
 * `detail` is the transport's reason (e.g. ECONNREFUSED); `nothingPaid` adds that to the hint.
 */
export function upstreamFailure(
  timedOut: boolean,
  upstream: string,
  detail: string,
  nothingPaid = false,
): StokaProxyError {
  const paid = nothingPaid ? "; nothing was paid" : "";
  return timedOut
    ? new StokaProxyError(
        "upstream_timeout",
        `${upstream} did not answer in time: ${detail}`,
        `retry later${paid}`,
      )
    : new StokaProxyError(
        "upstream_unreachable",
        `cannot reach ${upstream}: ${detail}`,
        `check the upstream URL and network${paid}`,
      );
}

/** Whether an error from UpstreamClient.send is its timeout. */
export function timedOut(e: unknown): boolean {
  return e instanceof UpstreamError && e.kind === "timeout";
}
