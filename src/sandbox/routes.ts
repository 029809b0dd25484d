import type { IncomingHttpHeaders } from "node:http";
import { StrKey } from "@stellar/stellar-sdk";
import type { SandboxChain } from "./chain.js";
import { readPrice, resolveTtl, writePrice } from "./pricing.js";
import type { Pricing } from "./pricing.js";
import type { StokaState } from "./state.js";
import { takeFault } from "./switches.js";
import type { EmulatorSwitches } from "./switches.js";

/**
 * Every route of the emulated stoka, in one table (docs/wire-protocol.md, stoka's routes). The emulator
 * (emulator.ts) does the generic parts: payment verification and settlement for `paid`
 * routes, `Authorization: Stellar` checks for `signed` routes, JSON merge fields.
 */
export interface EmulatorRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Absolute URL of the request, for the 402's `resource`. */
  url: string;
  /** True when the request carries a payment header (the paid retry). */
  paying: boolean;
}

export interface EmulatorResponse {
  status: number;
  headers?: Record<string, string>;
  json?: Record<string, unknown>;
  body?: Buffer;
}

export interface RouteContext {
  state: StokaState;
  chain: SandboxChain;
  switches: EmulatorSwitches;
  pricing: Pricing;
  payTo: string;
  maxTimeoutSeconds: number;
  now: () => number;
  /** Waits for `ms` unless the emulator is closing. */
  sleep: (ms: number) => Promise<void>;
}

export interface PaidQuote {
  price: bigint;
  description: string;
  mimeType: string;
}

export type RouteSpec =
  | { kind: "public"; handle(req: EmulatorRequest, p: string[], ctx: RouteContext): EmulatorResponse }
  | {
      kind: "signed";
      /** [short spelling, long spelling] (docs/wire-protocol.md, Wallet-signed routes). */
      audiences: [string, string];
      handle(req: EmulatorRequest, p: string[], ctx: RouteContext, signer: string): EmulatorResponse;
    }
  | {
      kind: "paid";
      /** Price the request before payment; a response instead (404, 400, 204) ends it unpaid. */
      quote(req: EmulatorRequest, p: string[], ctx: RouteContext): Promise<PaidQuote | EmulatorResponse>;
      /** After the payment verified, before settling: a response here is sent uncharged. */
      precheck?(
        req: EmulatorRequest,
        p: string[],
        ctx: RouteContext,
        payer: string,
        paid: bigint,
      ): EmulatorResponse | null;
      fulfil(
        req: EmulatorRequest,
        p: string[],
        ctx: RouteContext,
        payer: string,
        paid: bigint,
      ): EmulatorResponse;
    };

export interface RouteDef {
  name: string;
  method: string;
  pattern: RegExp;
  spec: RouteSpec;
}

const err = (status: number, error: string): EmulatorResponse => ({ status, json: { error } });
const header = (req: EmulatorRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

function ttlFrom(
  req: EmulatorRequest,
  ctx: RouteContext,
): { seconds: number; days: number } | EmulatorResponse {
  const raw = header(req, "x-stoka-ttl-seconds");
  if (raw === undefined) return resolveTtl(undefined, ctx.pricing.ttl);
  if (!/^[0-9]{1,12}$/.test(raw.trim()))
    return err(400, "X-Stoka-TTL-Seconds must be a whole number of seconds");
  return resolveTtl(Number(raw.trim()), ctx.pricing.ttl);
}

function blobJson(
  blob: { id: string; key: string; owner: string; data: Buffer; ttlSeconds: number; expiresAtMs: number },
  paid: bigint,
) {
  return {
    id: blob.id,
    key: blob.key,
    owner_pubkey: blob.owner,
    size_bytes: blob.data.length,
    expires_at: new Date(blob.expiresAtMs).toISOString(),
    ttl_seconds: blob.ttlSeconds,
    charged_atomic: paid.toString(),
  };
}

const isResponse = (v: unknown): v is EmulatorResponse =>
  typeof v === "object" && v !== null && "status" in v;

/** Waits (bounded by the switch) until `probe` finds something, polling every 50 ms. */
async function waitFor<T>(
  probe: () => T | undefined,
  seconds: number,
  ctx: RouteContext,
): Promise<T | undefined> {
  const deadline = ctx.now() + seconds * 1000;
  for (let found = probe(); ; found = probe()) {
    if (found !== undefined || ctx.now() >= deadline) return found;
    await ctx.sleep(50);
  }
}

export const ROUTES: RouteDef[] = [
  {
    name: "manifest",
    method: "GET",
    pattern: /^\/\.well-known\/stoka(?:\.json)?$/,
    spec: {
      kind: "public",
      handle: (_req, _p, ctx) => ({
        status: 200,
        json: {
          x402: {
            version: 2,
            scheme: "exact",
            network: ctx.chain.info.network,
            asset: ctx.chain.info.usdcAsset,
            pay_to: ctx.payTo,
            facilitator_url: "https://facilitator.sandbox.invalid",
            max_timeout_seconds: ctx.maxTimeoutSeconds,
            fees_sponsored: true,
          },
          pricing: { unit: "usdc_atomic", decimals: 7, ...ctx.pricing },
          routes: ROUTES.map((r) => ({
            method: r.method,
            path: r.pattern.source,
            name: r.name,
            auth: r.spec.kind === "paid" ? "x402" : r.spec.kind === "signed" ? "stellar-signature" : "none",
          })),
        },
      }),
    },
  },
  {
    name: "store",
    method: "POST",
    pattern: /^\/v1\/store$/,
    spec: {
      kind: "paid",
      quote: async (req, _p, ctx) => {
        if (!header(req, "x-stoka-key")) return err(400, "X-Stoka-Key header is required");
        const ttl = ttlFrom(req, ctx);
        if (isResponse(ttl)) return ttl;
        return {
          price: writePrice(req.body.length, ttl.days, ctx.pricing.store),
          description: `store ${req.body.length} bytes for ${ttl.days} days`,
          mimeType: "application/json",
        };
      },
      fulfil: (req, _p, ctx, payer, paid) => {
        const ttl = ttlFrom(req, ctx) as { seconds: number };
        const blob = ctx.state.putBlob(payer, header(req, "x-stoka-key") ?? "", req.body, ttl.seconds);
        return { status: 201, json: blobJson(blob, paid) };
      },
    },
  },
  {
    name: "update",
    method: "PUT",
    pattern: /^\/v1\/object\/(.+)$/,
    spec: {
      kind: "paid",
      // Decision: a PUT without X-Stoka-TTL-Seconds is priced and stored with the default TTL.
      quote: async (req, _p, ctx) => {
        const ttl = ttlFrom(req, ctx);
        if (isResponse(ttl)) return ttl;
        return {
          price: writePrice(req.body.length, ttl.days, ctx.pricing.update),
          description: `update to ${req.body.length} bytes for ${ttl.days} days`,
          mimeType: "application/json",
        };
      },
      // Foreign or missing key: 404 after verifying, before settling: nothing is charged.
      precheck: (_req, [key], ctx, payer) =>
        ctx.state.getBlob(payer, key ?? "") ? null : err(404, "no object with that key belongs to the payer"),
      fulfil: (req, [key], ctx, payer, paid) => {
        const ttl = ttlFrom(req, ctx) as { seconds: number };
        const blob = ctx.state.putBlob(payer, key ?? "", req.body, ttl.seconds);
        return { status: 200, json: blobJson(blob, paid) };
      },
    },
  },
  {
    name: "retrieve",
    method: "GET",
    pattern: /^\/v1\/retrieve\/(.+)$/,
    spec: {
      kind: "paid",
      // 404 before any 402: the quote needs the size. X-Stoka-Owner makes it exact; without it
      // the largest blob under that key is quoted.
      quote: async (req, [key], ctx) => {
        const owner = header(req, "x-stoka-owner");
        const candidates = owner ? [ctx.state.getBlob(owner, key ?? "")] : ctx.state.blobsWithKey(key ?? "");
        const sizes = candidates.filter((b) => b !== undefined).map((b) => b.data.length);
        if (sizes.length === 0) return err(404, "no object with that key");
        const size = Math.max(...sizes);
        return {
          price: readPrice(size, ctx.pricing.retrieve),
          description: `retrieve ${size} bytes`,
          mimeType: "application/octet-stream",
        };
      },
      precheck: (_req, [key], ctx, payer, paid) => {
        const blob = ctx.state.getBlob(payer, key ?? "");
        if (!blob) return err(404, "no object with that key belongs to the payer");
        const price = readPrice(blob.data.length, ctx.pricing.retrieve);
        return price === paid
          ? null
          : err(402, `the payer's object costs ${price}; send X-Stoka-Owner for an exact quote`);
      },
      fulfil: (_req, [key], ctx, payer) => {
        const blob = ctx.state.getBlob(payer, key ?? "");
        if (!blob) return err(404, "no object with that key belongs to the payer");
        return {
          status: 200,
          headers: {
            "content-type": "application/octet-stream",
            "x-stoka-owner-pubkey": blob.owner,
            "x-stoka-expires-at": new Date(blob.expiresAtMs).toISOString(),
          },
          body: blob.data,
        };
      },
    },
  },
  {
    name: "delete",
    method: "DELETE",
    pattern: /^\/v1\/object\/(.+)$/,
    spec: {
      kind: "signed",
      audiences: ["delete", "object-delete"],
      // Idempotent: 204 for missing or foreign keys too.
      handle: (_req, [key], ctx, signer) => {
        ctx.state.deleteBlob(signer, key ?? "");
        return { status: 204 };
      },
    },
  },
  {
    name: "challenge",
    method: "POST",
    pattern: /^\/v1\/auth\/challenge$/,
    spec: {
      kind: "public",
      handle: (req, _p, ctx) => {
        let audience: unknown;
        try {
          audience = (JSON.parse(req.body.toString("utf8")) as { audience?: unknown }).audience;
        } catch {
          return err(400, 'body must be JSON {"audience": "<name>"}');
        }
        if (typeof audience !== "string" || !acceptedAudiences(ctx.switches).has(audience)) {
          return err(400, `unknown audience ${JSON.stringify(audience)}`);
        }
        const c = ctx.state.issueChallenge(audience);
        if (takeFault(ctx.switches, "stale_challenge")) c.expiresAtMs = ctx.now() - 1;
        return {
          status: 200,
          json: { challenge_id: c.id, message: c.message, expires_at: new Date(c.expiresAtMs).toISOString() },
        };
      },
    },
  },
  {
    name: "usage",
    method: "GET",
    pattern: /^\/v1\/me\/usage$/,
    spec: {
      kind: "signed",
      audiences: ["usage", "me-usage"],
      handle: (req, _p, ctx, signer) => {
        const asked = Number.parseInt(req.query.get("days") ?? "7", 10);
        const days = Math.min(Math.max(Number.isFinite(asked) ? asked : 7, 1), 90);
        const rows = ctx.state.usage(signer, days);
        const total = rows.reduce((sum, r) => sum + BigInt(r.spent_atomic), 0n);
        return { status: 200, json: usageAnswer(ctx, signer, days, rows, total) };
      },
    },
  },
  {
    name: "profile",
    method: "POST",
    pattern: /^\/v1\/profile$/,
    spec: {
      kind: "signed",
      audiences: ["profile", "profile-bind"],
      handle: (req, _p, ctx, signer) => {
        let email: unknown;
        try {
          email = (JSON.parse(req.body.toString("utf8")) as { email?: unknown }).email;
        } catch {
          return err(400, 'body must be JSON {"email": "..."}');
        }
        if (typeof email !== "string" || !/^[^@\s]+@[^@\s]+$/.test(email))
          return err(400, "email is not valid");
        ctx.state.profiles.set(signer, email);
        return { status: 200, json: { pubkey: signer, email } };
      },
    },
  },
  {
    name: "queue_push",
    method: "POST",
    pattern: /^\/v1\/queue\/([^/]+)\/([^/]+)\/push$/,
    spec: {
      kind: "paid",
      quote: async (req, [to], ctx) => {
        if (!StrKey.isValidEd25519PublicKey(to ?? "")) return err(400, "to_pubkey is not a G… address");
        return {
          price: readPrice(req.body.length, ctx.pricing.retrieve),
          description: `push ${req.body.length} bytes`,
          mimeType: "application/json",
        };
      },
      fulfil: (req, [to, topic], ctx, payer, paid) => {
        const msg = ctx.state.push(to ?? "", topic ?? "", payer, req.body);
        return {
          status: 201,
          json: {
            id: msg.id,
            to_pubkey: to,
            topic,
            size_bytes: msg.data.length,
            charged_atomic: paid.toString(),
          },
        };
      },
    },
  },
  {
    name: "queue_pop",
    method: "POST",
    pattern: /^\/v1\/queue\/([^/]+)\/pop$/,
    spec: {
      kind: "paid",
      // Long-polls for a message before quoting; an empty mailbox is 204 and not charged.
      quote: async (req, [topic], ctx) => {
        const owner = header(req, "x-stoka-owner");
        const heads = () => {
          const found = owner
            ? [ctx.state.peek(owner, topic ?? "")].filter((m) => m !== undefined)
            : ctx.state.peekTopic(topic ?? "");
          return found.length > 0 ? found : undefined;
        };
        const found = req.paying ? heads() : await waitFor(heads, ctx.switches.popWaitSeconds, ctx);
        if (!found) return { status: 204 };
        const size = Math.max(...found.map((m) => m.data.length));
        return {
          price: readPrice(size, ctx.pricing.retrieve),
          description: `pop ${size} bytes`,
          mimeType: "application/octet-stream",
        };
      },
      precheck: (_req, [topic], ctx, payer, paid) => {
        const head = ctx.state.peek(payer, topic ?? "");
        if (!head) return { status: 204 };
        const price = readPrice(head.data.length, ctx.pricing.retrieve);
        return price === paid
          ? null
          : err(402, `the next message costs ${price}; send X-Stoka-Owner for an exact quote`);
      },
      fulfil: (_req, [topic], ctx, payer) => {
        const msg = ctx.state.take(payer, topic ?? "");
        if (!msg) return { status: 204 };
        return {
          status: 200,
          headers: {
            "content-type": "application/octet-stream",
            "x-stoka-receipt": msg.receipt ?? "",
            "x-stoka-message-id": msg.id,
            "x-stoka-from": msg.from,
          },
          body: msg.data,
        };
      },
    },
  },
  {
    name: "queue_ack",
    method: "POST",
    pattern: /^\/v1\/queue\/([^/]+)\/ack\/([^/]+)$/,
    spec: {
      kind: "signed",
      audiences: ["ack", "queue-ack"],
      handle: (_req, [topic, receipt], ctx, signer) =>
        ctx.state.ack(signer, topic ?? "", receipt ?? "")
          ? { status: 204 }
          : err(404, "no outstanding delivery with that receipt"),
    },
  },
];

/** The challenge audiences the emulator currently accepts. */
export function acceptedAudiences(switches: EmulatorSwitches): Set<string> {
  const out = new Set<string>();
  for (const r of ROUTES) {
    if (r.spec.kind !== "signed") continue;
    const [short, long] = r.spec.audiences;
    if (switches.audiences !== "long") out.add(short);
    if (switches.audiences !== "short") out.add(long);
  }
  return out;
}

/** Finds the route for a method and path; params are percent-decoded (keys may hold `/`). */
export function matchRoute(
  method: string,
  path: string,
): { route: RouteDef; params: string[] } | { allowed: string[] } | null {
  const allowed: string[] = [];
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (!m) continue;
    if (route.method !== method) {
      allowed.push(route.method);
      continue;
    }
    try {
      return { route, params: m.slice(1).map((s) => decodeURIComponent(s ?? "")) };
    } catch {
      return null;
    }
  }
  return allowed.length > 0 ? { allowed } : null;
}

/** The usage answer in the shape the switch names (switches.ts, UsageShape). */
function usageAnswer(
  ctx: RouteContext,
  signer: string,
  days: number,
  rows: { date: string; spent_atomic: string; requests: number }[],
  total: bigint,
): Record<string, unknown> {
  const base = { pubkey: signer, unit: "usdc_atomic" };
  switch (ctx.switches.usageShape) {
    case "days":
      return { ...base, days: rows, total_atomic: total.toString() };
    case "series":
      return {
        ...base,
        days,
        series: rows.map((r) => ({ day: r.date, charged_atomic: Number(r.spent_atomic) })),
      };
    case "map":
      return { ...base, usage: Object.fromEntries(rows.map((r) => [r.date, r.spent_atomic])) };
    case "pairs":
      // A top-level list: the merge fields cannot be added to it, so it travels under `data`.
      return { data: rows.map((r) => [r.date, r.spent_atomic]) };
    case "nested":
      return { ...base, usage: { daily: rows.map((r) => ({ date: r.date, amount: r.spent_atomic })) } };
    case "payments":
      return {
        ...base,
        days: rows.map((r) => ({
          date: r.date,
          spent_atomic: r.spent_atomic,
          payments: ctx.state.charges
            .filter((c) => c.payer === signer && new Date(c.atMs).toISOString().slice(0, 10) === r.date)
            .map((c) => ({ tx: c.tx, amount: c.amount.toString(), at: new Date(c.atMs).toISOString() })),
        })),
      };
    case "garbage":
      return { ...base, total: total.toString() };
  }
}
