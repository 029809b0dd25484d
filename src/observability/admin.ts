import http from "node:http";
import type { AddressInfo } from "node:net";
import { Registry, collectDefaultMetrics } from "prom-client";
import type { ListenAddress } from "../config/config.js";

/**
 * The admin listener, on its own port (design.md §5): /metrics, /healthz (alive), /readyz
 * (ready to pay; false while shutting down or when a readiness check fails).
 */
export type ReadinessCheck = () => Promise<string | null>;

export class AdminServer {
  readonly registry = new Registry();
  private readonly server: http.Server;
  private shuttingDown = false;
  url = "";

  constructor(
    private readonly listenOn: ListenAddress,
    private readonly checks: ReadinessCheck[] = [],
  ) {
    collectDefaultMetrics({ register: this.registry });
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch(() => {
        res.writeHead(500).end();
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.listenOn.port, this.listenOn.host, () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.url = `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
    return this.url;
  }

  beginShutdown(): void {
    this.shuttingDown = true;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const json = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res
        .writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) })
        .end(text);
    };
    if (path === "/healthz") return json(200, { status: "alive" });
    if (path === "/readyz") {
      if (this.shuttingDown) return json(503, { status: "not ready", reasons: ["shutting down"] });
      const reasons = (await Promise.all(this.checks.map((c) => c()))).filter((r): r is string => r !== null);
      return reasons.length === 0
        ? json(200, { status: "ready" })
        : json(503, { status: "not ready", reasons });
    }
    if (path === "/metrics") {
      const text = await this.registry.metrics();
      res.writeHead(200, { "content-type": this.registry.contentType }).end(text);
      return;
    }
    json(404, { error: "not found; try /metrics, /healthz or /readyz" });
  }
}
