import http from "node:http";
import type { AddressInfo } from "node:net";
import { timingSafeEqual } from "node:crypto";
import { collectDefaultMetrics } from "prom-client";
import type { Registry } from "prom-client";
import type { ListenAddress } from "../config/config.js";

/**
 * The admin listener, on its own port (docs/metrics.md): /metrics, /healthz (alive), /readyz
 * (ready to pay; false while shutting down or when a readiness check fails).
 */
export type ReadinessCheck = () => Promise<string[]>;

/** More pages on the admin port (e.g. status-routes.ts): answers and returns true, or false to pass. */
export type AdminRoute = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean>;

export class AdminServer {
  private readonly server: http.Server;
  private shuttingDown = false;
  url = "";

  constructor(
    private readonly listenOn: ListenAddress,
    readonly registry: Registry,
    private readonly ready: ReadinessCheck = async () => [],
    private readonly metricsToken?: string,
    private readonly routes: readonly AdminRoute[] = [],
  ) {
    // Default process metrics, once per registry (several listeners may share one).
    if (!registry.getSingleMetric("process_cpu_user_seconds_total"))
      collectDefaultMetrics({ register: registry });
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
      const reasons = await this.ready();
      return reasons.length === 0
        ? json(200, { status: "ready" })
        : json(503, { status: "not ready", reasons });
    }
    if (path === "/metrics") {
      if (this.metricsToken && !bearerMatches(req.headers.authorization, this.metricsToken)) {
        res.writeHead(401, { "www-authenticate": 'Bearer realm="stoka-proxy metrics"' }).end();
        return;
      }
      const text = await this.registry.metrics();
      res.writeHead(200, { "content-type": this.registry.contentType }).end(text);
      return;
    }
    for (const route of this.routes) if (await route(req, res)) return;
    json(404, { error: "not found; try /, /metrics, /healthz or /readyz" });
  }
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = Buffer.from(m[1] as string);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
