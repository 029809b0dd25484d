import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A plain origin that is *not* a paid host: echoes what it received, and answers /pay-me with
 * a stoka-shaped 402 (which the proxy must pass through unpaid).
 */
export interface Origin {
  url: string;
  port: number;
  received: { method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }[];
  close(): Promise<void>;
}

export async function startOrigin(): Promise<Origin> {
  const received: Origin["received"] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      if (req.url?.startsWith("/pay-me")) {
        const challenge = JSON.stringify({
          x402Version: 2,
          accepts: [
            {
              scheme: "exact",
              network: "stellar:testnet",
              asset: "CBIELTK6YBZJU5UP2WWQEUCYKLPU6AUNZ2BQ4WWFEIE3USCIHMXQDAMA",
              payTo: "GAPRO7H3JNM4LVR33IDR5PYNQ35TJJXWJW65HU267RIPJIUUGEPWCAXB",
              maxAmountRequired: "1000",
              maxTimeoutSeconds: 120,
              extra: { areFeesSponsored: true },
            },
          ],
        });
        res.writeHead(402, {
          "content-type": "application/json",
          connection: "close, x-hop",
          "x-hop": "secret-hop",
          "keep-alive": "timeout=5",
        });
        res.end(challenge);
        return;
      }
      res.writeHead(200, { "content-type": "application/json", "x-origin": "yes" });
      res.end(JSON.stringify({ got: body.length }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://localhost:${port}`,
    port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
