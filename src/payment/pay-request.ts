import type { PaidHost, PaidHostEntry } from "../config/config.js";
import { findPaidHost, servedPaidHost } from "../config/paid-hosts.js";
import { normaliseHost } from "../http/host-name.js";
import { upstreamUrl } from "../http/upstream-url.js";
import { readBoundedJson } from "../parsing/bounded-json.js";
import { routeMethod, routeName, routesForPath } from "../stoka/route-names.js";
import { parseChallenge } from "../x402/challenge.js";
import type { Challenge } from "../x402/challenge.js";
import { encodeBase64Json } from "../x402/payment-header.js";
import { resourceElsewhere } from "../x402/resource-host.js";
import type { RefusalCode } from "./decide.js";
import { PAY_REQUEST_PREFIX } from "../observability/request-id.js";

/**
 * `stoka-proxy pay` (docs/operations.md, Paying for stoka's own clients): what it reads on
 * stdin, which paid host and budget route the payment is for, and which open payment a later
 * `--settled` / `--failed` finishes. Pure: the shell (cli/pay-command.ts) reads stdin and the
 * store, then hands the same pure decision functions the proxy uses (decide, afterReservation,
 * settle) what these return.
 */

/** Bound on the requirements JSON read from stdin: the same as on a 402 body. */
export const MAX_PAY_INPUT_BYTES = 256 * 1024;

/** What stdin held: a challenge, and the resource URLs it names (v2 `resource.url`, v1 `resource`). */
export type PayInput =
  { ok: true; challenge: Challenge; resources: string[] } | { ok: false; reason: string };

/**
 * The shapes stoka's clients send as X_PAYMENT_CMD input, read as the proxy reads a 402:
 *
 *   {x402Version: 1, accepts: [...]}                 ─▶ the x402 v1 body form (v1 payload)
 *   {x402Version?: 2, resource: {...}, accepts: [...]} ─▶ the x402 v2 header form (echoes resource)
 *   {x402Version?: 2, accepts: [...]}                ─▶ the stoka form
 *   {scheme, network, asset, payTo, ...}              ─▶ one requirement: the stoka form
 *
 * The first three are also what the proxy's own CommandPaymentSigner writes, so a proxy can use
 * `stoka-proxy pay` as its X_PAYMENT_CMD. Every value stays verbatim (it is echoed).
 */
export function readPayInput(text: string): PayInput {
  const parsed = readBoundedJson(text, { maxBytes: MAX_PAY_INPUT_BYTES, maxDepth: 32 });
  if (!parsed.ok)
    return { ok: false, reason: `the requirements JSON on stdin is not usable: ${parsed.reason}` };
  const v = parsed.value;
  if (typeof v !== "object" || v === null || Array.isArray(v))
    return { ok: false, reason: "the requirements JSON on stdin is not a JSON object" };
  const o = v as Record<string, unknown>;
  const version = o.x402Version ?? 2;
  let read;
  if (!("accepts" in o)) {
    // One requirement alone: what clients that pay the stoka form hand their signer.
    read = parseChallenge({}, JSON.stringify({ x402Version: 2, accepts: [o] }));
  } else if (version !== 1 && "resource" in o) {
    // Read exactly as a PAYMENT-REQUIRED header would be (the same parser, the same checks).
    read = parseChallenge({ "payment-required": encodeBase64Json({ ...o, x402Version: version }) }, "");
  } else {
    read = parseChallenge({}, JSON.stringify({ ...o, x402Version: version }));
  }
  if (!read.ok)
    return { ok: false, reason: read.reason.replace(/^402 body|^PAYMENT-REQUIRED header/, "stdin") };
  const c = read.challenge;
  const named = (c.resource as { url?: unknown } | undefined)?.url;
  const resources =
    typeof named === "string"
      ? [named]
      : [...new Set(c.accepts.map((r) => r.raw.resource).filter((r): r is string => typeof r === "string"))];
  return { ok: true, challenge: c, resources };
}

/** What the command line adds: `--url`, `--route`, `--method`. */
export interface PayFlags {
  url?: string;
  route?: string;
  method?: string;
}

export interface TargetFacts {
  /** Where origin-form requests go (the gateway's stoka): a path-only resource is on it. */
  gateway: URL;
  paidHosts: readonly PaidHostEntry[];
  /** Wallet-signed route names: never paid, so a path they share is the paid route's. */
  walletAuthRoutes: readonly string[];
}

/** The paid host, upstream URL, method and budget route a payment is for. */
export interface PayTarget {
  ok: true;
  host: PaidHost;
  url: URL;
  method: string;
  route: string;
}

export interface TargetRefusal {
  ok: false;
  /** terms_rejected: a host not trusted; bad_request: the flags are needed to tell. */
  code: "terms_rejected" | "bad_request";
  reason: string;
}

const DEFAULT_PORT = { "http:": 80, "https:": 443 } as const;

/**
 * Which paid host and route: the URL is `--url`, else the resource the requirements name (a
 * path alone is on the gateway's stoka), else, with `--route` alone, the gateway itself. Its
 * host must be a configured paid host or the gateway upstream (as the proxy's gateway mode
 * trusts it): a payment for any other host is refused, never made. The route is the proxy's
 * own route name for that URL; `--route` / `--method` decide when the path alone cannot (a
 * flag that contradicts the path is refused, not believed).
 */
export function payTarget(
  resources: readonly string[],
  flags: PayFlags,
  facts: TargetFacts,
): PayTarget | TargetRefusal {
  const bad = (reason: string): TargetRefusal => ({ ok: false, code: "bad_request", reason });
  if (flags.url === undefined && resources.length > 1)
    return bad(
      `the requirements name ${resources.length} different resources; pass --url to say which one is paid`,
    );
  const text = flags.url ?? resources[0];
  if (text === undefined && flags.route === undefined)
    return bad(
      "the requirements name no resource URL; pass --url URL (or --route NAME for the gateway's stoka)",
    );
  let url: URL;
  try {
    // A path alone is resolved on the gateway; `//host/x` would name a host and is checked like one.
    url = text === undefined ? new URL(facts.gateway.href) : new URL(text, facts.gateway);
  } catch {
    return bad(`${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    return {
      ok: false,
      code: "terms_rejected",
      reason: `the resource ${url.protocol} URL is not HTTP(S): nothing is paid`,
    };
  const host = normaliseHost(url.hostname);
  const port = Number(url.port || DEFAULT_PORT[url.protocol]);
  const scheme = url.protocol === "https:" ? "https" : "http";
  const entry = host === null ? undefined : findPaidHost(facts.paidHosts, host, port);
  const gw = facts.gateway;
  const onGateway = url.origin === gw.origin;
  let paid: PaidHost;
  if (entry) paid = servedPaidHost(entry, scheme, port);
  else if (onGateway && host !== null) paid = { host, upstream: new URL(gw.origin), payTo: [] };
  else
    return {
      ok: false,
      code: "terms_rejected",
      reason: `the resource's host ${url.host} is neither a paid host (paid_hosts) nor the gateway upstream: nothing is paid for it (pass --url naming a paid host if the client reached it under another name)`,
    };
  // The gateway's base path is not part of stoka's routes (as in gateway mode).
  const basePath = onGateway && !entry ? gw.pathname.replace(/\/$/, "") : "";
  const path =
    basePath && url.pathname.startsWith(`${basePath}/`) ? url.pathname.slice(basePath.length) : url.pathname;
  const route = chooseRoute(path, flags, facts.walletAuthRoutes);
  if (!route.ok) return route;
  return {
    ok: true,
    host: paid,
    url: upstreamUrl(paid.upstream, `${url.pathname}${url.search}`),
    method: route.method,
    route: route.route,
  };
}

const METHOD = /^[A-Za-z]{1,16}$/;

function chooseRoute(
  path: string,
  flags: PayFlags,
  walletAuthRoutes: readonly string[],
): { ok: true; method: string; route: string } | TargetRefusal {
  const bad = (reason: string): TargetRefusal => ({ ok: false, code: "bad_request", reason });
  if (flags.method !== undefined && !METHOD.test(flags.method))
    return bad(`--method ${JSON.stringify(flags.method)} is not an HTTP method`);
  const method = flags.method?.toUpperCase();
  const candidates = routesForPath(path);
  if (method !== undefined) {
    const route = routeName(method, path);
    if (flags.route !== undefined && candidates.length > 0 && route !== flags.route)
      return bad(`--route ${flags.route} contradicts ${method} ${path}, which is route ${route}`);
    return { ok: true, method, route: candidates.length > 0 ? route : (flags.route ?? route) };
  }
  if (flags.route !== undefined) {
    if (candidates.length > 0) {
      const c = candidates.find((r) => r.name === flags.route);
      if (!c)
        return bad(
          `--route ${flags.route} contradicts the path ${path} (route ${candidates.map((r) => r.name).join(" or ")})`,
        );
      return { ok: true, method: c.method, route: c.name };
    }
    const m = routeMethod(flags.route);
    if (m === undefined)
      return bad(`the path ${path} names no stoka route: pass --method with --route ${flags.route}`);
    return { ok: true, method: m, route: flags.route };
  }
  // A path both a paid and a wallet-signed route use (PUT / DELETE /v1/object/…): the paid one.
  const paid = candidates.filter((r) => !walletAuthRoutes.includes(r.name));
  const only = paid.length === 1 ? paid[0] : candidates.length === 1 ? candidates[0] : undefined;
  if (only) return { ok: true, method: only.method, route: only.name };
  if (candidates.length === 0)
    return bad(`the path ${path} names no stoka route: pass --route NAME or --method METHOD`);
  return bad(
    `the path ${path} may be route ${candidates.map((r) => r.name).join(" or ")}: pass --route or --method`,
  );
}

/** The x402 v2 `resource.url` must be on the paid host (or its upstream), as in the proxy. */
export function resourceRefusal(challenge: Challenge, host: PaidHost): string | null {
  return resourceElsewhere(challenge.resource, [host.host, host.upstream.hostname]);
}

/**
 * Exit codes of `stoka-proxy pay` (docs/operations.md): 0 the header was printed (or the
 * payment finished); a refusal by kind, so a caller can tell a budget from a term; 2 usage;
 * 78 configuration; 1 anything else (signing failed, the store broke mid-way).
 */
export const PAY_EXIT = {
  ok: 0,
  other: 1,
  usage: 2,
  refusedTerms: 5,
  refusedBudget: 6,
  withheld: 7,
  config: 78,
} as const;

export function refusalExit(code: RefusalCode | "bad_request"): number {
  switch (code) {
    case "challenge_unreadable":
    case "payee_unknown":
    case "terms_rejected":
      return PAY_EXIT.refusedTerms;
    case "no_budget":
    case "price_above_cap":
    case "budget_exceeded":
    case "budget_unavailable":
    case "signer_refused": // a remote signer's budgets or terms (pay signs locally: not met here)
      return PAY_EXIT.refusedBudget;
    case "payments_stopped":
    case "dry_run":
    case "approval_denied":
    case "approval_timeout":
      return PAY_EXIT.withheld;
    case "no_signer":
      return PAY_EXIT.config;
    case "bad_request":
      return PAY_EXIT.usage;
  }
}

// The mark lives with the request ids, which must never take it from an app.
export { PAY_REQUEST_PREFIX };

/** The latest row of a payment, as much of it as choosing needs. */
export interface OpenCandidate {
  paymentId: string;
  requestId: string;
  client: string;
  state: string;
}

/**
 * Which payment `--settled` / `--failed` finishes: the one named by `--payment-id`, or, with
 * none, the single open pay-command payment of the client (never a guess among several).
 * Open = `sent` (printed, the outcome not yet reported) or `indeterminate` (its lease ran out,
 * or a restart found it): both still counted. A proxy's own payments are never finished here.
 */
export function choosePaymentToFinish<T extends OpenCandidate>(
  latest: readonly T[],
  want: { paymentId?: string; client: string },
): { ok: true; payment: T } | { ok: false; code: "payment_not_open" | "bad_request"; reason: string } {
  const open = (p: T) => p.state === "sent" || p.state === "indeterminate";
  const ours = (p: T) => p.requestId.startsWith(PAY_REQUEST_PREFIX);
  if (want.paymentId !== undefined) {
    const p = latest.find((x) => x.paymentId === want.paymentId);
    if (!p)
      return { ok: false, code: "payment_not_open", reason: `no payment ${want.paymentId} is in the ledger` };
    if (!ours(p))
      return {
        ok: false,
        code: "payment_not_open",
        reason: `payment ${p.paymentId} was made by the proxy, not by \`stoka-proxy pay\`: the proxy finishes it (or \`stoka-proxy reconcile\`)`,
      };
    if (!open(p))
      return {
        ok: false,
        code: "payment_not_open",
        reason: `payment ${p.paymentId} is ${p.state}, not open: nothing to finish`,
      };
    return { ok: true, payment: p };
  }
  const mine = latest.filter((p) => ours(p) && open(p) && p.client === want.client);
  const only = mine[0];
  if (mine.length === 1 && only) return { ok: true, payment: only };
  if (mine.length === 0)
    return {
      ok: false,
      code: "payment_not_open",
      reason: `client ${want.client} has no open \`stoka-proxy pay\` payment`,
    };
  const ids = mine
    .slice(0, 5)
    .map((p) => p.paymentId)
    .join(", ");
  return {
    ok: false,
    code: "bad_request",
    reason: `client ${want.client} has ${mine.length} open \`stoka-proxy pay\` payments (${ids}${mine.length > 5 ? ", …" : ""}): pass --payment-id`,
  };
}
