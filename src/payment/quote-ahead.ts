import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { LRUCache } from "lru-cache";
import type { PaidHost } from "../config/config.js";
import { QUOTED_ROUTES, quotePrice, quotedChallenge } from "../stoka/quote.js";
import type { QuotedRoute, StokaPricing } from "../stoka/quote.js";
import type { Challenge } from "../x402/challenge.js";

/**
 * Quote-ahead (docs/configuration.md, Quote-ahead): for the routes a paid host opted in, the
 * payment goes with the FIRST request, priced from the manifest's `pricing`, so the 402 round
 * trip and the second upload are saved. What it needs, per paid host and route:
 *
 * - a template: the last 402 paid on the normal path (its form and the requirement chosen);
 * - the manifest's pricing (kept ten minutes, a failure one minute);
 * - for retrieve, the object's size, remembered (LRU) from earlier store/update/retrieve answers.
 *
 * Without any of them the request takes the normal path. A quoted payment answered with a 402
 * is rejected like any refused payment (never paid a second time for that request: the app gets
 * the 402) and the route takes the normal path for a minute, learning a new template.
 */
const PRICING_MS = 10 * 60_000;
const PRICING_FAILED_MS = 60_000;
const COOLDOWN_MS = 60_000;
const MAX_SIZES = 10_000;

/** The paid host a request is for and the URL it goes to (proxy/context.ts, PaidTarget). */
interface PaidTarget {
  host: PaidHost;
  url: URL;
}

interface Template {
  challenge: Challenge;
  chosen: Readonly<Record<string, unknown>>;
}

export interface QuoteRequest {
  target: PaidTarget;
  route: string;
  headers: OutgoingHttpHeaders;
  body: Buffer;
  /** The paying wallet: the owner of what it stores. */
  wallet: string | undefined;
}

export class QuoteAhead {
  private readonly templates = new Map<string, Template>();
  private readonly sizes = new LRUCache<string, number>({ max: MAX_SIZES });
  private readonly prices = new Map<string, { pricing: StokaPricing | null; untilMs: number }>();
  private readonly coolUntil = new Map<string, number>();

  constructor(
    private readonly fetchPricing: (base: URL) => Promise<StokaPricing | null>,
    private readonly now: () => number,
  ) {}

  /** The challenge to pay ahead with, or undefined: the normal path. */
  /** Whether the request's route is quoted ahead at all (synchronous: most requests are not). */
  applies(q: QuoteRequest): boolean {
    return quotedRoute(q) !== undefined;
  }

  async challengeFor(q: QuoteRequest): Promise<Challenge | undefined> {
    const route = quotedRoute(q);
    if (!route) return undefined;
    const key = routeKey(q.target, route);
    if ((this.coolUntil.get(key) ?? 0) > this.now()) return undefined;
    const template = this.templates.get(key);
    if (!template) return undefined;
    const bytes = route === "retrieve" ? this.sizes.get(objectKey(q)) : q.body.length;
    if (bytes === undefined) return undefined;
    const pricing = await this.pricing(q.target.host.upstream);
    if (!pricing) return undefined;
    const ttl = q.headers["x-stoka-ttl-seconds"];
    if (ttl !== undefined && typeof ttl !== "string") return undefined;
    const quote = quotePrice(pricing, { route, bytes, ...(ttl !== undefined ? { ttlHeader: ttl } : {}) });
    if (!quote) return undefined;
    const resource = resourceFor(template, q.target.url);
    if (!resource) return undefined;
    return quotedChallenge(template.challenge, template.chosen, resource, quote) ?? undefined;
  }

  /** A payment on the normal path settled: its 402 is the route's template from now on. */
  learn(q: QuoteRequest, challenge: Challenge, chosen: Readonly<Record<string, unknown>>): void {
    const route = quotedRoute(q);
    if (route) this.templates.set(routeKey(q.target, route), { challenge, chosen });
  }

  /** A quoted payment met a 402: the template and pricing are stale; the normal path for a while. */
  refused(q: QuoteRequest): void {
    const route = quotedRoute(q);
    if (!route) return;
    const key = routeKey(q.target, route);
    this.templates.delete(key);
    this.prices.delete(q.target.host.upstream.origin);
    this.coolUntil.set(key, this.now() + COOLDOWN_MS);
  }

  /** A 2xx answer: the object's size (the stored body, or the retrieved one) for later retrieves. */
  answered(q: QuoteRequest, status: number, headers: IncomingHttpHeaders): void {
    // Every store/update/retrieve of a host that quotes retrieves, opted in or not: an update
    // on the normal path still changes the size the next quoted retrieve is priced at.
    const route = QUOTED_ROUTES.find((r) => r === q.route);
    if (!route || q.target.host.quoteAhead?.includes("retrieve") !== true) return;
    if (status < 200 || status > 299) return;
    if (route !== "retrieve") return void this.sizes.set(objectKey(q), q.body.length);
    // Only a whole, uncoded answer says the object's size (a 206 is a range, gzip is not the bytes).
    const length = Number(headers["content-length"]);
    const whole = status === 200 && headers["content-encoding"] === undefined;
    if (whole && Number.isSafeInteger(length) && length >= 0) this.sizes.set(objectKey(q), length);
    else this.sizes.delete(objectKey(q));
  }

  private async pricing(base: URL): Promise<StokaPricing | null> {
    const cached = this.prices.get(base.origin);
    if (cached && cached.untilMs > this.now()) return cached.pricing;
    const pricing = await this.fetchPricing(base);
    this.prices.set(base.origin, {
      pricing,
      untilMs: this.now() + (pricing ? PRICING_MS : PRICING_FAILED_MS),
    });
    return pricing;
  }
}

/** The route, when the paid host opted it in (and it is one quote-ahead can price). */
function quotedRoute(q: QuoteRequest): QuotedRoute | undefined {
  const route = q.route as QuotedRoute;
  return QUOTED_ROUTES.includes(route) && q.target.host.quoteAhead?.includes(route) === true
    ? route
    : undefined;
}

const routeKey = (t: PaidTarget, route: string) => `${t.host.upstream.origin}|${route}`;

/** (upstream, owner, key): a store's key is its X-Stoka-Key, a retrieve's and update's the path's. */
function objectKey(q: QuoteRequest): string {
  const header = (name: string) => {
    const v = q.headers[name];
    return typeof v === "string" ? v : "";
  };
  let key = header("x-stoka-key");
  const m = /^\/v1\/(?:retrieve|object)\/(.+)$/.exec(q.target.url.pathname);
  if (m?.[1]) {
    try {
      key = decodeURIComponent(m[1]);
    } catch {
      key = m[1];
    }
  }
  const owner = /^\/v1\/retrieve\//.test(q.target.url.pathname) ? header("x-stoka-owner") : (q.wallet ?? "");
  return JSON.stringify([q.target.host.upstream.origin, owner, key]);
}

/** The template's resource URL with this request's path and query (stoka names the request). */
function resourceFor(t: Template, url: URL): string | undefined {
  const r = t.chosen.resource ?? (t.challenge.resource as { url?: unknown } | undefined)?.url;
  if (typeof r !== "string") return undefined;
  try {
    const u = new URL(r);
    u.pathname = url.pathname;
    u.search = url.search;
    return u.toString();
  } catch {
    return undefined;
  }
}
