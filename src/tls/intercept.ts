import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import type { Logger } from "../observability/logger.js";
import type { LeafCertificates } from "./leaf-cache.js";

/**
 * TLS interception for a paid host inside a CONNECT tunnel: terminate TLS with a leaf for that
 * host signed by the proxy's CA (ALPN http/1.1), then hand the decrypted stream and its tunnel
 * session to `serve` (the proxy's inner HTTP server, where each request is handled like a
 * forward request: payment, wallet auth, budgets, metrics). If no certificate can be made, the
 * tunnel is closed: the app sees a failed handshake, never an unpaid pass-through.
 */
export function makeInterceptor<Session extends { host: string }>(
  leaves: LeafCertificates,
  serve: (decrypted: Duplex, session: Session) => void,
  logger: Logger,
) {
  return (socket: Duplex, session: Session): void => {
    socket.pause();
    leaves.contextFor(session.host).then(
      (secureContext) => {
        // A stream wrapper, not the socket itself: TLSSocket reads a net.Socket's handle directly
        // and would miss the ClientHello bytes already read (and unshifted) to detect TLS.
        const secure = new tls.TLSSocket(asPlainDuplex(socket) as unknown as Socket, {
          isServer: true,
          secureContext,
          ALPNProtocols: ["http/1.1"],
        });
        secure.on("error", () => secure.destroy());
        serve(secure, session);
        socket.resume();
      },
      (e: unknown) => {
        logger.error(
          { host: session.host, err: (e as Error).message },
          "cannot make a certificate for a paid host; closing the tunnel",
        );
        socket.destroy();
      },
    );
  };
}

/** A Duplex over `socket` that TLS consumes as a JS stream (unshifted bytes included). */
function asPlainDuplex(socket: Duplex): Duplex {
  const wrapper = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy();
      cb(err);
    },
  });
  socket.on("data", (chunk: Buffer) => {
    if (!wrapper.push(chunk)) socket.pause();
  });
  socket.on("end", () => wrapper.push(null));
  socket.on("close", () => wrapper.destroy());
  socket.on("error", (e) => wrapper.destroy(e));
  return wrapper;
}
