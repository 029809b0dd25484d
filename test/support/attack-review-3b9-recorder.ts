import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";

/**
 * For the attack-review-3b9 tests: an HTTP server in front of the sandbox emulator that records
 * every request (method, target, headers) and, per request, either forwards it to the emulator
 * or answers itself (`decide`). Also a listener that only counts connections (a host nothing
 * may reach).
 */
export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
}

export type Decision = "forward" | { status: number; headers?: Record<string, string>; body?: string };

export interface Recorder {
  url: string;
  port: number;
  seen: Seen[];
  decide: (s: Seen) => Decision;
  close(): Promise<void>;
}

export async function startRecorder(emulatorUrl: string): Promise<Recorder> {
  const target = new URL(emulatorUrl);
  const rec: Recorder = {
    url: "",
    port: 0,
    seen: [],
    decide: () => "forward",
    close: async () => undefined,
  };
  const server = http.createServer({ maxHeaderSize: 1 << 20 }, (req, res) => {
    const s: Seen = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: { ...req.headers },
      rawHeaders: [...req.rawHeaders],
    };
    rec.seen.push(s);
    const d = rec.decide(s);
    if (d !== "forward") {
      req.resume();
      res.writeHead(d.status, d.headers ?? {});
      res.end(d.body ?? "");
      return;
    }
    const up = http.request(
      {
        host: target.hostname,
        port: Number(target.port),
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on("error", () => {
      res.writeHead(599);
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  rec.port = (server.address() as AddressInfo).port;
  rec.url = `http://127.0.0.1:${rec.port}`;
  rec.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return rec;
}

/** A listener that accepts and counts connections, and answers nothing useful. */
export async function startTrap(): Promise<{ port: number; count: () => number; close: () => void }> {
  let count = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    count += 1;
    socks.add(s);
    s.on("error", () => undefined);
    s.end("HTTP/1.1 418 trap\r\ncontent-length: 0\r\n\r\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    count: () => count,
    close: () => {
      for (const s of socks) s.destroy();
      server.close();
    },
  };
}

/** One raw HTTP/1.1 exchange on a fresh connection; the answer's status and text. */
export function raw(
  port: number,
  bytes: string | Buffer,
  timeoutMs = 15_000,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let text = "";
    const timer = setTimeout(() => s.destroy(), timeoutMs);
    s.on("data", (d: Buffer) => (text += d.toString("latin1")));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text });
    });
    s.on("connect", () => s.write(bytes));
  });
}
