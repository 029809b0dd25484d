import type { IncomingMessage, OutgoingHttpHeaders } from "node:http";
import { StokaProxyError } from "../errors.js";
import { readAll } from "../http/body.js";
import type { ProxyContext } from "./context.js";
import { appendVia, withoutHopByHop } from "../http/hop-by-hop.js";

/**
 * A request to a paid host, ready to send (and to send again byte for byte): the body is
 * buffered up to the cap, hop-by-hop headers are gone, Via and Host are set.
 */
export interface PreparedRequest {
  method: string;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

const BODYLESS = new Set(["GET", "HEAD", "DELETE", "OPTIONS"]);
const NO_BODY = Buffer.alloc(0);

export async function prepareRequest(
  ctx: ProxyContext,
  req: IncomingMessage,
  upstream: URL,
): Promise<PreparedRequest> {
  const method = req.method ?? "GET";
  // No Content-Length and no Transfer-Encoding: no body (RFC 9112 §6.3), nothing to wait for.
  const framed =
    req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  if (!framed) req.resume();
  const body = framed ? await readAll(req, ctx.config.maxBufferedBodyBytes) : NO_BODY;
  if (body === null) {
    throw new StokaProxyError(
      "body_too_large",
      `request body is larger than ${ctx.config.maxBufferedBodyBytes} bytes, the most a paid request may buffer`,
      "send a smaller body or raise max_buffered_body_bytes",
    );
  }
  const headers: OutgoingHttpHeaders = withoutHopByHop(req.headers); // a copy
  appendVia(headers, ctx.via);
  headers.host = upstream.host;
  delete headers["content-length"];
  if (body.length > 0 || !BODYLESS.has(method)) headers["content-length"] = String(body.length);
  return { method, headers, body };
}
