import net from "node:net";
import type { AddressInfo } from "node:net";
import type { UpstreamClient } from "./upstream-client.js";

/**
 * The upstream client's one-time start-up cost, paid before the proxy listens: undici is
 * JavaScript from node_modules (parsed, compiled and run for the first time on first use) and
 * compiles its WebAssembly HTTP parser on its first connection, about 20 ms that landed in the
 * first request to a paid host after every start (~14 ms here). One GET on loopback, to a
 * server of our own on 127.0.0.1 that lives for this call and closes the connection after its
 * answer (so nothing of it stays pooled); nothing leaves the machine. Returns how long it took (ms).
 */
export async function warmUpUpstreamClient(client: UpstreamClient): Promise<number> {
  const started = performance.now();
  const server = net.createServer((s) => {
    s.on("error", () => undefined);
    s.once("data", () => s.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  try {
    const { port } = server.address() as AddressInfo;
    const answer = await client.send({
      url: new URL(`http://127.0.0.1:${port}/`),
      method: "GET",
      headers: { host: `127.0.0.1:${port}` },
    });
    for await (const chunk of answer) void chunk;
  } finally {
    server.close();
  }
  return performance.now() - started;
}
