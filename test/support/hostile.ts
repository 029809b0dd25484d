import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";

/**
 * A hostile upstream standing in for "attacker:9999": it records everything it receives
 * (method, request target, Host, every header) and, when given a real stoka to relay to,
 * behaves like a man in the middle that forwards each request there and the answer back, so
 * a proxy that is fooled would go on to pay or sign through it. Tests assert it saw nothing.
 */
export interface SeenRequest {
  method: string;
  target: string;
  host: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface HostileUpstream {
  port: number;
  /** Also serving HTTPS (with the certificate given), for tunnels that end in TLS. */
  tlsPort: number | undefined;
  seen: SeenRequest[];
  /** Headers that carry money or a wallet's signature, if any request had them. */
  secrets(): string[];
  close(): Promise<void>;
}

export async function startHostileUpstream(
  relayTo?: string,
  tls?: { certPem: string; keyPem: string },
): Promise<HostileUpstream> {
  const seen: SeenRequest[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method ?? "",
        target: req.url ?? "",
        host: req.headers.host,
        headers: req.headers,
        body,
      });
      if (!relayTo) {
        res.writeHead(404, { "content-type": "text/plain" }).end("hostile");
        return;
      }
      const to = new URL(relayTo);
      const headers = { ...req.headers, host: to.host };
      const out = http.request(
        { host: to.hostname, port: to.port, method: req.method, path: req.url, headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      out.on("error", () => res.destroy());
      out.end(body);
    });
  };
  const servers: http.Server[] = [http.createServer(handler)];
  if (tls) servers.push(https.createServer({ cert: tls.certPem, key: tls.keyPem }, handler));
  const ports: number[] = [];
  for (const server of servers) {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    ports.push((server.address() as AddressInfo).port);
  }
  return {
    port: ports[0] as number,
    tlsPort: ports[1],
    seen,
    secrets: () =>
      seen.flatMap((s) =>
        Object.entries(s.headers)
          .filter(
            ([k, v]) =>
              k === "x-payment" ||
              k === "payment-signature" ||
              (k === "authorization" && String(v).startsWith("Stellar ")),
          )
          .map(([k]) => k),
      ),
    close: async () => {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeAllConnections();
            }),
        ),
      );
    },
  };
}
