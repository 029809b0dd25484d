import { STATUS_CODES } from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { errorResponse } from "../errors.js";
import { appendVia, withoutHopByHop } from "./hop-by-hop.js";

/** Writing answers to the app: errors as JSON (one table, errors.ts) and upstream responses. */
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
    "x-stoka-proxy-error": body.code,
  });
  res.end(payload);
}

/**
 * The same answer as raw HTTP/1.1 bytes, for a socket that has no ServerResponse (a connection
 * refused at accept, a request Node's parser rejected). Always `Connection: close`.
 */
export function rawErrorResponse(err: unknown, extraHeaders: Record<string, string> = {}): string {
  const { status, body } = errorResponse(err);
  const payload = JSON.stringify(body);
  const headers = {
    ...extraHeaders,
    "Content-Type": "application/json",
    "Content-Length": String(Buffer.byteLength(payload)),
    "X-Stoka-Proxy-Error": body.code,
    Connection: "close",
  };
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n${lines.join("")}\r\n${payload}`;
}

/** A status an HTTP response may carry (RFC 9110 §15: three digits, 100-599). */
export function validStatus(status: number | undefined): boolean {
  return status !== undefined && Number.isInteger(status) && status >= 100 && status <= 599;
}

/**
 * Drops `X-Stoka-Proxy-*` from an upstream's headers: they say what this proxy did (paid,
 * which tx, why it refused), so only the proxy may write them.
 */
export function stripOwnHeaders(headers: IncomingHttpHeaders): void {
  for (const k of Object.keys(headers)) if (k.toLowerCase().startsWith("x-stoka-proxy-")) delete headers[k];
}

/** Response headers for the app: upstream's minus hop-by-hop and minus ours, plus ours. */
export function responseHeaders(
  upstream: IncomingHttpHeaders,
  extra: Record<string, string>,
  via?: string,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(withoutHopByHop(upstream)))
    if (v !== undefined && !k.startsWith("x-stoka-proxy-")) out[k] = v;
  if (via) appendVia(out, via);
  return { ...out, ...extra };
}

/** Streams an upstream response to the app. */
export function pipeUpstream(
  upstream: IncomingMessage,
  res: ServerResponse,
  extra: Record<string, string>,
  via?: string,
): void {
  res.writeHead(upstream.statusCode ?? 502, responseHeaders(upstream.headers, extra, via));
  upstream.on("error", () => res.destroy());
  upstream.pipe(res);
}

/** Sends a buffered body with the upstream's headers (content-length recomputed). */
export function sendBuffered(
  res: ServerResponse,
  status: number,
  headers: IncomingHttpHeaders,
  body: Buffer,
  extra: Record<string, string>,
  via?: string,
): void {
  const h = responseHeaders(headers, extra, via);
  delete h["content-length"];
  h["content-length"] = String(body.length);
  res.writeHead(status, h);
  res.end(body);
}
