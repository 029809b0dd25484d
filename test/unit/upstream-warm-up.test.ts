import net from "node:net";
import { describe, expect, it, vi } from "vitest";
import { UpstreamClient } from "../../src/http/upstream-client.js";
import { warmUpUpstreamClient } from "../../src/http/warm-up.js";

describe("the upstream client's start-up warm-up (src/http/warm-up.ts)", () => {
  it("talks only to a loopback server of its own, and leaves no connection open", async () => {
    const client = new UpstreamClient({ timeoutMs: 2_000, connectTimeoutMs: 2_000, caPems: [] });
    const connect = vi.spyOn(net.Socket.prototype, "connect");
    const opened: net.Socket[] = [];
    const seen = vi.spyOn(net, "connect");
    try {
      const ms = await warmUpUpstreamClient(client);
      expect(ms).toBeGreaterThan(0);
      const targets = connect.mock.calls.map((c) => JSON.stringify(c[0]));
      expect(targets.length).toBeGreaterThan(0);
      for (const t of targets) expect(t).toMatch(/"host":"127\.0\.0\.1"/);
      for (const r of seen.mock.results) if (r.type === "return") opened.push(r.value as net.Socket);
      expect(opened.length).toBeGreaterThan(0);
      // The server closed the connection after its answer: nothing stays pooled.
      const until = Date.now() + 2_000;
      while (opened.some((s) => !s.destroyed) && Date.now() < until)
        await new Promise((r) => setTimeout(r, 10));
      expect(opened.every((s) => s.destroyed)).toBe(true);
    } finally {
      connect.mockRestore();
      seen.mockRestore();
      client.close();
    }
  });
});
