import http from "node:http";
import type { AddressInfo } from "node:net";
import { timingSafeEqual } from "node:crypto";
import { collectDefaultMetrics } from "prom-client";
import type { Registry } from "prom-client";
import type { ListenAddress } from "../config/config.js";
import type { PaymentSwitch, SwitchChange } from "../resilience/payment-switch.js";
import { checkAdminToken } from "./admin-auth.js";

/** The kill switch and dry run, flipped at run time through the admin endpoints. */
export interface PaymentControls {
  token: string | undefined;
  paymentSwitch: PaymentSwitch;
  /** Each flip's log line. */
  onFlip: (changes: SwitchChange[]) => void;
  now: () => number;
}

const MAX_ADMIN_BODY = 4096;

/**
 * The admin listener, on its own port (docs/metrics.md): /metrics, /healthz (alive), /readyz
 * (ready to pay; false while shutting down or when a readiness check fails), `POST /admin/reload`
 * (docs/operations.md, Reloading) and the payment controls (docs/operations.md, Kill switch and
 * dry run): `POST /payments/stop`, `/payments/resume`, `/payments/dry-run` (on/off),
 * `GET /payments`; both need the admin token.
 */
export type ReadinessCheck = () => Promise<string[]>;

/** More pages on the admin port (e.g. status-routes.ts): answers and returns true, or false to pass. */
export type AdminRoute = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean>;
/** A reload's result, as the proxy reports it. */
export type ReloadAnswer =
  { ok: true; applied: string[]; needsRestart: string[] } | { ok: false; error: string };

export interface AdminOptions {
  /** The kill switch and dry run behind `/payments/*` (same admin token); absent: 404. */
  controls?: PaymentControls;
  /** Bearer token `POST /admin/reload` requires; without one the endpoint answers 403. */
  adminToken?: string | undefined;
  /** Reloads the configuration; without it the endpoint answers 404. */
  reload?: () => ReloadAnswer;
}

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
    private readonly options: AdminOptions = {},
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
    if (path === "/admin/reload" && this.options.reload) return this.reload(req, res, json);
    if (this.options.controls && (path === "/payments" || path?.startsWith("/payments/")))
      return this.payments(req, path, json);
    for (const route of this.routes) if (await route(req, res)) return;
    json(404, { error: "not found; try /, /metrics, /healthz or /readyz" });
  }

  /** Token required even on loopback: anyone on the machine could otherwise rewrite budgets' effect. */
  private reload(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    json: (status: number, body: unknown) => void,
  ): void {
    req.resume();
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      return json(405, { error: "use POST /admin/reload" });
    }
    const token = this.options.adminToken;
    if (!token)
      return json(403, {
        error: "reload over HTTP is disabled: no admin token is configured",
        hint: "set STOKA_PROXY_ADMIN_TOKEN or admin.token_file and restart, or send SIGHUP to the process",
      });
    if (!bearerMatches(req.headers.authorization, token)) {
      res.setHeader("www-authenticate", 'Bearer realm="stoka-proxy admin"');
      return json(401, {
        error: "a valid admin token is required",
        hint: "send Authorization: Bearer <admin token>",
      });
    }
    const outcome = (this.options.reload as () => ReloadAnswer)();
    if (outcome.ok)
      return json(200, { status: "reloaded", applied: outcome.applied, needs_restart: outcome.needsRestart });
    json(422, {
      status: "refused",
      error: outcome.error,
      hint: "the configuration in use keeps serving; fix the file and reload again",
    });
  }

  private async payments(
    req: http.IncomingMessage,
    path: string,
    json: (status: number, body: unknown) => void,
  ): Promise<void> {
    const c = this.options.controls;
    const auth = checkAdminToken(req.headers.authorization, c?.token);
    if (!auth.ok || !c) {
      const a = auth.ok ? null : auth;
      return json(a?.status ?? 403, {
        error: a?.error ?? "payment controls are not available here",
        code: a?.code ?? "admin_disabled",
        hint: a?.hint ?? "",
      });
    }
    const state = () => {
      const v = c.paymentSwitch.view();
      return {
        stopped: v.state.stopped !== null,
        dry_run: v.state.dryRun !== null,
        decision: c.paymentSwitch.decide().kind,
        state: v.state,
      };
    };
    if (req.method === "GET" && path === "/payments") return json(200, state());
    if (req.method !== "POST") return json(405, { error: "use POST (GET /payments for the state)" });
    const url = new URL(req.url ?? "/", "http://admin");
    const input = await readSmallJson(req);
    if (input === null)
      return json(400, { error: `the body must be a JSON object under ${MAX_ADMIN_BODY} bytes` });
    const reason = typeof input.reason === "string" ? input.reason : (url.searchParams.get("reason") ?? "");
    const flip = { by: "admin", reason, atMs: c.now() };
    let changes: SwitchChange[];
    if (path === "/payments/stop") changes = c.paymentSwitch.set({ stopped: true }, flip);
    else if (path === "/payments/resume") changes = c.paymentSwitch.set({ stopped: false }, flip);
    else if (path === "/payments/dry-run") {
      const on = readOnOff(
        input.on ??
          input.dry_run ??
          input.mode ??
          url.searchParams.get("on") ??
          url.searchParams.get("mode") ??
          "on",
      );
      if (on === null) return json(400, { error: 'say on or off: {"on": true} or ?on=off' });
      changes = c.paymentSwitch.set({ dryRun: on }, flip);
    } else return json(404, { error: "try /payments/stop, /payments/resume or /payments/dry-run" });
    c.onFlip(changes);
    return json(200, { ...state(), changed: changes.length > 0 });
  }
}

function readOnOff(v: unknown): boolean | null {
  if (v === true || v === false) return v;
  if (typeof v !== "string") return null;
  const t = v.trim().toLowerCase();
  if (["on", "true", "1", "yes"].includes(t)) return true;
  if (["off", "false", "0", "no"].includes(t)) return false;
  return null;
}

/** A small JSON object body, `{}` when empty; null when too large or not an object. */
async function readSmallJson(req: http.IncomingMessage): Promise<Record<string, unknown> | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_ADMIN_BODY) return null;
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = Buffer.from(m[1] as string);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}
