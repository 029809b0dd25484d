import type { ServerResponse } from "node:http";
import { StokaProxyError } from "../errors.js";

/**
 * Whether the app that sent this request has gone (closed or reset its connection, or Node's
 * server ended it after a half-close): nobody would read the answer, so nothing is signed or
 * sent for it. The request's socket is read, not the response's: a pipelined response has no
 * socket of its own until the one before it is done.
 */
export function clientGone(res: ServerResponse): boolean {
  const socket = res.req.socket;
  return res.destroyed || socket.destroyed || !socket.writable;
}

/** The reason a payment was abandoned because its client left (ledger row: failed, released). */
export function clientGoneError(when: string): StokaProxyError {
  return new StokaProxyError(
    "client_gone",
    `the client closed its connection ${when}, so nothing was sent`,
    "nothing was paid; the app may send the request again",
  );
}
