import net from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A TCP relay on a loopback port in front of a real server, to take the server away from a
 * client without touching the server (it is shared): `stop` closes the port and every
 * connection through it (refused, reset), `blackhole` accepts connections and never answers,
 * `freeze` keeps the open connections but carries nothing (a partition), `start` forwards
 * again on the same port.
 */
export interface TcpRelay {
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
  blackhole(): Promise<void>;
  /** Resets every connection open through the relay, and keeps forwarding new ones. */
  cut(): void;
  /** Connections stay open but carry nothing either way (a partition), until `thaw`. */
  freeze(): void;
  thaw(): void;
  /** The server's bytes reach the client `ms` late (0: at once): a slow link, or a stalled server. */
  lag(ms: number): void;
  close(): Promise<void>;
}

export async function tcpRelay(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpRelay> {
  let mode: "forward" | "blackhole" = "forward";
  let frozen = false;
  let lagMs = 0;
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
  };
  const onConnection = (client: net.Socket) => {
    track(client);
    if (mode === "blackhole") return; // read nothing, answer nothing
    const upstream = net.connect(targetPort, targetHost);
    track(upstream);
    // Bytes cross only while not frozen: a frozen connection stays open and carries nothing.
    client.on("data", (chunk: Buffer) => void (frozen || upstream.write(chunk)));
    upstream.on("data", (chunk: Buffer) => {
      if (frozen) return;
      // Every chunk waits as long, so their order is kept.
      if (lagMs > 0) setTimeout(() => client.write(chunk), lagMs);
      else client.write(chunk);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  };
  let server: net.Server | undefined;
  let port = 0;
  const listen = async () => {
    const s = net.createServer(onConnection);
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
    });
    port = (s.address() as AddressInfo).port;
    server = s;
  };
  const cut = () => {
    for (const s of sockets) s.resetAndDestroy();
  };
  const unlisten = async () => {
    const s = server;
    server = undefined;
    cut();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return {
    get port() {
      return port;
    },
    async start() {
      mode = "forward";
      if (!server) await listen();
    },
    stop: unlisten,
    async blackhole() {
      cut();
      mode = "blackhole";
      if (!server) await listen();
    },
    cut,
    freeze: () => void (frozen = true),
    thaw: () => void (frozen = false),
    lag: (ms) => void (lagMs = ms),
    close: unlisten,
  };
}
