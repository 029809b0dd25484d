import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { withProxyWorld } from "../support/proxy-fixture.js";

/**
 * A reload that turns deny_private on closes a WebSocket whose host NAME is fine but whose
 * address is private (a name pointed at loopback by the injected resolver; the proxy's own
 * pinned lookup resolves and connects): judged by the address it went to, as blind tunnels are.
 */
const toLoopback = async (_host: string) => [{ address: "127.0.0.1", family: 4 as const }];

const closedWithin = (s: net.Socket, ms: number) =>
  new Promise<boolean>((resolve) => {
    if (s.destroyed) return resolve(true);
    const t = setTimeout(() => resolve(false), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });

describe("a reload that turns deny_private on", () => {
  it("closes a WebSocket to a name that resolved to a private address", async () => {
    const ws = http.createServer();
    ws.on("upgrade", (_req, socket: net.Socket) => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
      socket.pipe(socket);
    });
    await new Promise<void>((r) => ws.listen(0, "127.0.0.1", r));
    const port = (ws.address() as AddressInfo).port;
    try {
      await withProxyWorld(
        (c) => (c.egress.denyPrivate = false),
        async (w) => {
          const socket = net.connect(Number(new URL(w.proxyUrl).port), "127.0.0.1");
          await new Promise<void>((r) => socket.once("connect", () => r()));
          socket.write(
            `GET http://chat.example:${port}/chat HTTP/1.1\r\nHost: chat.example:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          );
          let got = "";
          socket.on("data", (c: Buffer) => (got += c.toString("latin1")));
          for (let i = 0; i < 100 && !got.includes("\r\n\r\n"); i++)
            await new Promise((r) => setTimeout(r, 50));
          expect(got).toMatch(/^HTTP\/1\.1 101/);
          // Bytes flow through the upgraded connection (the echo).
          got = "";
          socket.write("ping");
          for (let i = 0; i < 100 && !got.includes("ping"); i++) await new Promise((r) => setTimeout(r, 50));
          expect(got).toBe("ping");

          const current = w.proxy.live.current;
          const reloaded = w.proxy.reload(
            () => ({ ...current, egress: { ...current.egress, denyPrivate: true } }),
            "test",
          );
          expect(reloaded.ok).toBe(true);
          expect(await closedWithin(socket, 3_000)).toBe(true);
          expect(w.logs()).toMatch(/closed open tunnels the new egress policy denies/);
        },
        { resolve: toLoopback },
      );
    } finally {
      ws.closeAllConnections();
      ws.close();
    }
  }, 60_000);
});
