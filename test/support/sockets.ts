import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import net from "node:net";
import type tls from "node:tls";

/**
 * Raw sockets for what real clients will not send (malformed requests, a CONNECT left half
 * open), and the kernel's view of a process's sockets (/proc), for leak checks.
 */

export interface RawAnswer {
  /** Everything the proxy sent before it closed (or before `timeoutMs`). */
  text: string;
  status: number | null;
  headers: Record<string, string>;
  body: string;
  /** Whether the proxy closed the connection within `timeoutMs`. */
  closed: boolean;
}

export function parseAnswer(text: string, closed: boolean): RawAnswer {
  const split = text.indexOf("\r\n\r\n");
  const head = split >= 0 ? text.slice(0, split) : text;
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  return {
    text,
    status: m ? Number(m[1]) : null,
    headers,
    body: split >= 0 ? text.slice(split + 4) : "",
    closed,
  };
}

/** Reads from `socket` until it closes or `timeoutMs` passes (then destroys it). */
export function readUntilClosed(socket: net.Socket | tls.TLSSocket, timeoutMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    let text = "";
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseAnswer(text, closed));
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on("data", (c: Buffer) => (text += c.toString("latin1")));
    socket.on("error", () => undefined);
    socket.once("close", () => finish(true));
    socket.resume();
  });
}

export function connect(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1", ...(localAddress ? { localAddress } : {}) });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Writes `bytes` on a fresh connection and returns what came back before the close. */
export async function rawExchange(port: number, bytes: string, timeoutMs = 5000): Promise<RawAnswer> {
  const s = await connect(port);
  const answer = readUntilClosed(s, timeoutMs);
  s.write(bytes, "latin1");
  return answer;
}

/** Sends CONNECT and resolves once the proxy's 200 has been read (nothing after it is consumed). */
export async function openTunnel(
  port: number,
  authority: string,
  localAddress?: string,
): Promise<net.Socket> {
  const s = await connect(port, localAddress);
  s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  return new Promise((resolve, reject) => {
    let got = "";
    const onData = (c: Buffer) => {
      got += c.toString("latin1");
      const end = got.indexOf("\r\n\r\n");
      if (end < 0) return;
      s.off("data", onData);
      s.pause();
      if (!/^HTTP\/1\.1 200/.test(got)) {
        s.destroy();
        reject(new Error(`CONNECT refused: ${got.split("\r\n")[0]}`));
        return;
      }
      const rest = got.slice(end + 4);
      if (rest) s.unshift(Buffer.from(rest, "latin1"));
      resolve(s);
    };
    s.on("data", onData);
    s.once("error", reject);
  });
}

/** Resolves true when `socket` is closed by the other side within `ms`. */
export function closedWithin(socket: net.Socket | tls.TLSSocket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.on("error", () => undefined);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.resume();
  });
}

export async function until(
  check: () => boolean | Promise<boolean>,
  ms: number,
  every = 50,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, every));
  }
}

// ---- the kernel's view (Linux /proc) ----

const TCP_STATES: Record<string, string> = {
  "01": "ESTABLISHED",
  "02": "SYN_SENT",
  "03": "SYN_RECV",
  "04": "FIN_WAIT1",
  "05": "FIN_WAIT2",
  "06": "TIME_WAIT",
  "07": "CLOSE",
  "08": "CLOSE_WAIT",
  "09": "LAST_ACK",
  "0A": "LISTEN",
  "0B": "CLOSING",
};

export interface TcpEntry {
  localPort: number;
  remotePort: number;
  state: string;
  inode: number;
}

/** Every TCP socket the kernel knows (IPv4 and IPv6). */
export function tcpTable(): TcpEntry[] {
  const rows: TcpEntry[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const port = (addr: string | undefined) => parseInt(addr?.split(":")[1] ?? "0", 16);
      rows.push({
        localPort: port(f[1]),
        remotePort: port(f[2]),
        state: TCP_STATES[f[3] ?? ""] ?? (f[3] as string),
        inode: Number(f[9]),
      });
    }
  }
  return rows;
}

/** The server side of connections to `port` (the listening socket itself left out). */
export function serverSideSockets(port: number): TcpEntry[] {
  return tcpTable().filter((e) => e.localPort === port && e.state !== "LISTEN");
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The socket inodes a process holds, to match against tcpTable(). */
export function socketInodes(pid: number): Set<number> {
  const inodes = new Set<number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(Number(m[1]));
    } catch {
      // closed while listing
    }
  }
  return inodes;
}

/** TCP sockets held by `pid`, by state. */
export function tcpStatesOf(pid: number): Record<string, number> {
  const mine = socketInodes(pid);
  const states: Record<string, number> = {};
  for (const e of tcpTable()) if (mine.has(e.inode)) states[e.state] = (states[e.state] ?? 0) + 1;
  return states;
}

/** A moment relative to now, for tests that race a callback against the event loop's turns. */
export type LoopDelay = "now" | "micro" | "immediate1" | "immediate2" | "immediate3" | "ms50" | "ms300";

export function afterDelay(d: LoopDelay): Promise<void> {
  switch (d) {
    case "now":
      return Promise.resolve();
    case "micro":
      return new Promise((r) => queueMicrotask(r));
    case "immediate1":
      return new Promise((r) => setImmediate(r));
    case "immediate2":
      return new Promise((r) => setImmediate(() => setImmediate(r)));
    case "immediate3":
      return new Promise((r) => setImmediate(() => setImmediate(() => setImmediate(r))));
    case "ms50":
      return new Promise((r) => setTimeout(r, 50));
    case "ms300":
      return new Promise((r) => setTimeout(r, 300));
  }
}
