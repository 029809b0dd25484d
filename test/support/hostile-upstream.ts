import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local upstream that answers whatever a test scripts per path (deep, huge or odd 402s,
 * broken wallet-auth challenges), and records every request it receives, including any
 * payment header: counting those is how a test proves nothing was signed and sent.
 */
export interface HostileAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export interface HostileUpstream {
  url: string;
  /** Answers by request path (without the query); unknown paths get a 404. */
  answers: Map<string, HostileAnswer>;
  received: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  /** Requests that carried a payment (X-PAYMENT or PAYMENT-SIGNATURE). */
  paidRequests(): number;
  close(): Promise<void>;
}

export async function startHostileUpstream(): Promise<HostileUpstream> {
  const answers = new Map<string, HostileAnswer>();
  const received: HostileUpstream["received"] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
      const answer = answers.get((req.url ?? "/").split("?")[0] ?? "/");
      if (!answer) {
        res.writeHead(404, { "content-type": "text/plain" }).end("no such path");
        return;
      }
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(answer.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    answers,
    received,
    paidRequests: () =>
      received.filter(
        (r) => r.headers["x-payment"] !== undefined || r.headers["payment-signature"] !== undefined,
      ).length,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
