import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local upstream that answers whatever a test scripts per path (deep, huge or odd 402s,
 * broken wallet-auth challenges, bodies cut or stalled, raw bytes no server would send), and
 * records every request it receives, including any payment header: counting those is how a
 * test proves nothing was signed and sent.
 */
export interface HostileAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the head and this much of the body, then reset the connection. */
  resetAfterBytes?: number;
  /** Send the head and this much of the body, then never send the rest. */
  stallAfterBytes?: number;
  /** Write these bytes on the socket instead of a response (then close), e.g. a status 000. */
  raw?: string;
  /** Wait this long before answering (the client may leave meanwhile). */
  delayMs?: number;
  /** Send the head (chunked), then `body` again and again until the connection closes. */
  endless?: boolean;
}

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface HostileUpstream {
  url: string;
  /** Answers by request path (without the query); unknown paths get a 404. */
  answers: Map<string, HostileAnswer>;
  /** When set, decides every answer (before `answers`); undefined falls back to `answers`. */
  script: ((r: ReceivedRequest) => HostileAnswer | undefined) | undefined;
  received: ReceivedRequest[];
  /** How many `endless` answers saw their connection closed (by the proxy). */
  endlessClosed: number;
  /** Requests that carried a payment (X-PAYMENT or PAYMENT-SIGNATURE). */
  paidRequests(): number;
  close(): Promise<void>;
}

const carriesPayment = (r: { headers: http.IncomingHttpHeaders }) =>
  r.headers["x-payment"] !== undefined || r.headers["payment-signature"] !== undefined;

export async function startHostileUpstream(): Promise<HostileUpstream> {
  const answers = new Map<string, HostileAnswer>();
  const received: ReceivedRequest[] = [];
  const upstream: HostileUpstream = {
    url: "",
    answers,
    script: undefined,
    received,
    endlessClosed: 0,
    paidRequests: () => received.filter(carriesPayment).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      received.push(r);
      const answer = upstream.script?.(r) ?? answers.get((req.url ?? "/").split("?")[0] ?? "/");
      if (answer?.delayMs !== undefined) setTimeout(() => reply(answer), answer.delayMs);
      else reply(answer);
    });
    const reply = (answer: HostileAnswer | undefined) => {
      if (!answer) {
        res.writeHead(404, { "content-type": "text/plain" }).end("no such path");
        return;
      }
      if (answer.raw !== undefined) {
        req.socket.end(answer.raw, "latin1");
        return;
      }
      const body = Buffer.from(answer.body ?? "");
      if (answer.endless) {
        res.writeHead(answer.status, answer.headers ?? {});
        const chunk = body.length > 0 ? body : Buffer.alloc(16 * 1024, 0x20);
        // Bounded by the socket: it stops when the proxy closes the connection.
        const pump = setInterval(() => {
          if (!res.destroyed) res.write(chunk);
        }, 2);
        res.once("close", () => {
          clearInterval(pump);
          upstream.endlessClosed += 1;
        });
        return;
      }
      const cut = answer.resetAfterBytes ?? answer.stallAfterBytes;
      if (cut === undefined) {
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(body);
        return;
      }
      res.writeHead(answer.status, { "content-length": String(body.length), ...answer.headers });
      res.write(body.subarray(0, cut));
      // The bytes go out first, then the connection is reset (or simply left hanging).
      if (answer.resetAfterBytes !== undefined) setTimeout(() => req.socket.resetAndDestroy(), 20);
    };
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return upstream;
}
