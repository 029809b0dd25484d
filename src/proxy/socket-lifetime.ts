import net from "node:net";
import type { Duplex } from "node:stream";

/**
 * Small pieces that make sure every client socket ends: an answer followed by a bounded
 * lingering close, and idle timeouts on raw sockets that no http.Server watches any more.
 */

/** How long a socket we answered and closed may keep reading what the client still sends. */
export const ANSWER_LINGER_MS = 1000;

/**
 * Writes `answer`, sends FIN and keeps reading (and dropping) until the client closes, at most
 * `lingerMs`. Closing with unread bytes makes the kernel send RST, which can wipe the answer
 * before the client reads it (the lingering close of RFC 9112 §9.6); without the timer a
 * client that never closes would hold the socket forever.
 */
export function answerAndClose(socket: Duplex, answer: string, lingerMs = ANSWER_LINGER_MS): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  socket.once("close", () => clearTimeout(timer));
  socket.on("error", () => socket.destroy());
  socket.once("end", () => socket.destroy());
  if (socket.writable) socket.end(answer);
  socket.resume();
}

/**
 * Calls `idle` when `socket` has neither read nor written for `ms`. Only net.Socket (and
 * TLSSocket) keep an activity timer; a plain Duplex gets none.
 */
export function onIdle(socket: Duplex, ms: number, idle: () => void): void {
  if (!(socket instanceof net.Socket)) return;
  socket.setTimeout(ms);
  socket.on("timeout", idle);
}

/** Ends our side once what is queued is written, then releases the socket. */
export function finishThenDestroy(socket: Duplex): void {
  if (socket.destroyed) return;
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  socket.once("finish", () => socket.destroy());
  if (!socket.writableEnded) socket.end();
}
