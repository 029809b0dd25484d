import net from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A hand-written upstream on 127.0.0.1: `onRequest` gets each request head (everything up to
 * its blank line) and answers on the socket however a test needs, well-formed or not.
 */
export interface RawUpstream {
  port: number;
  /** Connections open now. */
  open: () => number;
  /** Connections accepted so far. */
  accepted: () => number;
  close: () => Promise<void>;
}

export async function startRawUpstream(
  onRequest: (s: net.Socket, head: string) => void,
): Promise<RawUpstream> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const srv = net.createServer((s) => {
    accepted += 1;
    sockets.add(s);
    s.on("error", () => undefined);
    s.once("close", () => sockets.delete(s));
    let got = "";
    s.on("data", (c: Buffer) => {
      got += c.toString("latin1");
      if (!got.includes("\r\n\r\n")) return;
      const head = got;
      got = "";
      onRequest(s, head);
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  return {
    port: (srv.address() as AddressInfo).port,
    open: () => sockets.size,
    accepted: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}
