import net from "node:net";
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
        const options: ServerTlsOptions = { isServer: true, secureContext, ALPNProtocols: ["http/1.1"] };
        const secure = nativeTls(socket, options) ?? wrappedTls(socket, options);
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

type ServerTlsOptions = tls.TLSSocketOptions & { isServer: true };

/**
 * TLS straight on the TCP handle (as tls.Server does): TLSSocket reads a net.Socket's handle
 * itself, so the bytes already read to tell TLS from HTTP (the ClientHello, unshifted back) are
 * handed to the TLS engine first, through the handle's `receive` (what newer Node versions do
 * for buffered data). Null when `socket` is not a plain TCP socket or Node lacks that hook.
 * The JS stream wrapper below costs a copy and several JS calls per record each way.
 */
function nativeTls(socket: Duplex, options: ServerTlsOptions): tls.TLSSocket | null {
  if (!(socket instanceof net.Socket) || socket instanceof tls.TLSSocket) return null;
  if (!(socket as unknown as { _handle?: unknown })._handle) return null;
  const buffered: Buffer[] = [];
  let chunk: unknown;
  while ((chunk = socket.read()) !== null) buffered.push(chunk as Buffer);
  const secure = new tls.TLSSocket(socket, options);
  const handle = (secure as unknown as { _handle?: { receive?: (b: Buffer) => void } })._handle;
  if (typeof handle?.receive !== "function") {
    // Cannot feed the engine: too late to fall back safely on this connection.
    secure.destroy();
    return secure;
  }
  for (const b of buffered) handle.receive(b);
  return secure;
}

function wrappedTls(socket: Duplex, options: ServerTlsOptions): tls.TLSSocket {
  // A stream wrapper, not the socket itself: TLS consumes it as a JS stream, unshifted bytes included.
  return new tls.TLSSocket(asPlainDuplex(socket) as unknown as Socket, options);
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
