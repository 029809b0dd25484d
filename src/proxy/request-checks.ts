import { StokaProxyError } from "../errors.js";
import { parseAuthority } from "../http/host-name.js";

/**
 * Request heads Node's parser lets through (or answers with a bare status line of its own)
 * that the proxy refuses with its JSON error, before the target is read. Pure.
 *
 *   HTTP/1.1 without Host, two Host lines, a Host that is no authority   400 (RFC 9112 §3.2)
 *   an Expect other than 100-continue                                    417 (RFC 9110 §10.1.1)
 *   2 000 header lines or more (Node would drop those past its count)    431 (RFC 6585 §5)
 *   a transfer coding other than chunked (`gzip, chunked`)               501 (RFC 9112 §6.1):
 *     the proxy removes Transfer-Encoding before forwarding, so the coding would be lost
 */
export interface RequestHead {
  httpVersion: string;
  /** Name, value, name, value, … as received (IncomingMessage.rawHeaders). */
  rawHeaders: string[];
  headers: { expect?: string | undefined; "transfer-encoding"?: string | undefined };
}

/**
 * Node keeps this many header lines of a request and drops the rest without a word (its
 * `maxHeadersCount`, set to this on both servers): a head that reaches it may have lost lines
 * (a second Host, say) and is refused, 431.
 */
export const MAX_HEADER_LINES = 2000;

export function requestFramingProblem(req: RequestHead): StokaProxyError | null {
  if (req.rawHeaders.length / 2 >= MAX_HEADER_LINES)
    return new StokaProxyError(
      "headers_too_large",
      `the request has ${MAX_HEADER_LINES} or more header lines`,
      "send fewer header lines",
    );
  const hosts: string[] = [];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2)
    if ((req.rawHeaders[i] as string).toLowerCase() === "host") hosts.push(req.rawHeaders[i + 1] as string);
  const hint = "send exactly one Host header naming the host you address";
  if (hosts.length === 0 && req.httpVersion === "1.1")
    return new StokaProxyError("bad_request", "an HTTP/1.1 request must carry a Host header", hint);
  if (hosts.length > 1)
    return new StokaProxyError("bad_request", "the request carries more than one Host header", hint);
  // An empty Host is allowed (a target without authority); anything else must be one.
  const host = hosts[0]?.trim();
  if (host && !parseAuthority(host).ok)
    return new StokaProxyError("bad_request", "the Host header is not host[:port]", hint);
  const expect = req.headers.expect;
  if (expect !== undefined && expect.trim().toLowerCase() !== "100-continue") {
    return new StokaProxyError(
      "expectation_failed",
      "the only expectation the proxy meets is 100-continue",
      "drop the Expect header",
    );
  }
  const coding = req.headers["transfer-encoding"];
  if (coding !== undefined && coding.trim().toLowerCase() !== "chunked") {
    return new StokaProxyError(
      "transfer_coding_unsupported",
      "the only transfer coding the proxy takes is chunked",
      "send the body with Content-Length or Transfer-Encoding: chunked (Content-Encoding for compression)",
    );
  }
  return null;
}
