import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { StokaProxyError } from "../errors.js";
import type { Logger } from "../observability/logger.js";
import { clientAddress } from "./connections.js";
import { rawErrorResponse } from "./error-answers.js";
import { answerAndClose } from "./socket-lifetime.js";

/**
 * Requests Node's HTTP parser rejected (CL+TE, two Content-Lengths, obs-fold, bare CR/LF, NUL,
 * a header section too large) and requests that did not arrive in time. Node's default answer
 * is a bare status line; ours is the JSON error with `X-Stoka-Proxy-Error`, one log line, then
 * the socket is closed. Such a request never reaches dispatch, so it is never forwarded
 * (RFC 9112 §6.3, §11.2: a message framed two ways is how requests are smuggled).
 */
export function clientErrorAnswer(err: NodeJS.ErrnoException & { reason?: string }): StokaProxyError | null {
  if (err.code === "HPE_HEADER_OVERFLOW")
    return new StokaProxyError(
      "headers_too_large",
      "the request's header section is larger than the proxy accepts",
      "send fewer or smaller headers (see max_header_bytes)",
    );
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT")
    return new StokaProxyError(
      "request_timeout",
      "the request did not arrive in time",
      "send the whole request without pausing (see timeouts)",
    );
  if (err.code?.startsWith("HPE_"))
    // llhttp's reasons are fixed texts ("Invalid header value char"), never bytes of the request.
    return new StokaProxyError(
      "malformed_request",
      `the request is not valid HTTP/1.1: ${err.reason ?? err.code}`,
      "fix the client: the proxy only accepts strictly framed requests",
    );
  return null;
}

/** The `_httpMessage` Node's own handler checks: a response under way on this socket. */
type WithResponse = Duplex & { _httpMessage?: ServerResponse | null; remoteAddress?: string };

/**
 * The `clientError` listener for the proxy's listener and the tunnels' inner server. Answers
 * only where the client will read it as the answer to the bad request: never after part of a
 * response was written (Node's own rule), never ahead of an earlier pipelined response.
 */
export function clientErrorHandler(
  logger: Logger,
  listener: "proxy" | "tunnel",
  tunnelHost?: (s: Duplex) => string | undefined,
) {
  // The parser repeats its error for every later chunk on a socket it already refused.
  const handled = new WeakSet<Duplex>();
  return (err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex): void => {
    if (handled.has(socket)) return;
    handled.add(socket);
    const answer = clientErrorAnswer(err);
    if (!answer) {
      socket.destroy();
      return;
    }
    const requestId = randomUUID();
    const s = socket as WithResponse;
    // No header values here: they may hold tokens or payment headers.
    const timedOut = answer.code === "request_timeout";
    logger[timedOut ? "debug" : "warn"](
      {
        request_id: requestId,
        listener,
        error_code: answer.code,
        parser_error: err.code,
        reason: err.reason,
        client_address: s.remoteAddress ? clientAddress(s) : undefined,
        tunnel_host: tunnelHost?.(socket),
      },
      timedOut
        ? "a request did not arrive in time; closing the connection"
        : "refused a request the HTTP parser rejected; closing the connection",
    );
    const bytes = rawErrorResponse(answer, { "X-Request-Id": requestId });
    const inFlight = s._httpMessage;
    if (!socket.writable) socket.destroy();
    else if (!inFlight) answerAndClose(socket, bytes);
    else if (!inFlight.req.complete) {
      // The bad bytes are this request's own body: its body stops here (the parser is done),
      // so the rest is never forwarded; answer it if nothing of its response went out.
      if (inFlight.headersSent) socket.destroy();
      else answerAndClose(socket, bytes);
    } else {
      // A pipelined request after the one being answered: an answer now would read as that
      // one's response (RFC 9112 §9.3.2), so it goes out after it, if nothing else is queued.
      inFlight.once("finish", () => {
        if (socket.writable && !s._httpMessage) answerAndClose(socket, bytes);
        else socket.destroy();
      });
      inFlight.once("close", () => {
        if (!inFlight.writableFinished) socket.destroy();
      });
    }
  };
}

/**
 * Whether Node was started with its lenient parser (`--insecure-http-parser`, on the command
 * line or in NODE_OPTIONS). The listeners pin it off, but the proxy's own upstream calls
 * (http-proxy-3 offers no per-request switch) would still parse leniently, so start-up refuses.
 */
export function insecureParserRequested(
  execArgv: readonly string[],
  nodeOptions: string | undefined,
): boolean {
  const flag = (a: string) => a === "--insecure-http-parser";
  return execArgv.some(flag) || (nodeOptions ?? "").split(/\s+/).some(flag);
}
