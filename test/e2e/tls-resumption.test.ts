import { readFileSync } from "node:fs";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import { openTunnel } from "../support/sockets.js";

/**
 * TLS to a paid host is terminated by the proxy (src/tls/intercept.ts) with cached secure
 * contexts: a client that comes back with the session it was given resumes it (no full
 * handshake, no certificate chain), over TLS 1.3 tickets and TLS 1.2 alike.
 */
let w: ProxyWorld;
let ca: string;
beforeAll(async () => {
  w = await startProxyWorld();
  ca = readFileSync(w.config.tls.caCertFile ?? "", "utf8");
});
afterAll(async () => {
  await w.close();
});

/** One TLS connection through a CONNECT tunnel; resolves with the session it ended with. */
async function handshake(
  version: tls.SecureVersion,
  session?: Buffer,
): Promise<{ reused: boolean; session: Buffer | undefined; status: string }> {
  const tunnel = await openTunnel(Number(new URL(w.proxyUrl).port), "test.api.stoka.space:443");
  const socket = tls.connect({
    socket: tunnel,
    servername: "test.api.stoka.space",
    ca,
    minVersion: version,
    maxVersion: version,
    ...(session ? { session } : {}),
  });
  let latest: Buffer | undefined;
  socket.on("session", (s: Buffer) => (latest = s));
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", resolve);
    socket.once("error", reject);
  });
  const reused = socket.isSessionReused();
  socket.write(
    "GET /.well-known/stoka.json HTTP/1.1\r\nHost: test.api.stoka.space\r\nConnection: close\r\n\r\n",
  );
  let text = "";
  socket.on("data", (c: Buffer) => (text += c.toString("latin1")));
  await new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return { reused, session: latest ?? socket.getSession(), status: text.split("\r\n")[0] ?? "" };
}

describe("TLS session resumption on intercepted paid hosts", () => {
  it.each(["TLSv1.3", "TLSv1.2"] as const)(
    "%s: the second connection resumes the first one's session",
    async (v) => {
      const first = await handshake(v);
      expect(first.status).toMatch(/^HTTP\/1\.1 200/);
      expect(first.reused).toBe(false);
      expect(first.session).toBeDefined();
      const second = await handshake(v, first.session);
      expect(second.status).toMatch(/^HTTP\/1\.1 200/);
      expect(second.reused).toBe(true);
    },
  );
});
