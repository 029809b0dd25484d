import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

/**
 * Who is asking (docs/configuration.md, Clients): a token from `Proxy-Authorization` (Bearer, or
 * Basic with the token as password, as `curl -x http://client:TOKEN@proxy` sends) or, for
 * origin-form gateway requests, `Authorization: Bearer`. Tokens are stored only as SHA-256.
 * With no clients configured, everyone is the configured client name. Pure.
 */
export interface ClientToken {
  name: string;
  tokenSha256: string;
}

export type Identity =
  { ok: true; client: string; consumedAuthorization: boolean } | { ok: false; reason: string };

function tokenFrom(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const m = /^\s*(Bearer|Basic)\s+(\S+)\s*$/i.exec(value);
  if (!m) return undefined;
  if ((m[1] as string).toLowerCase() === "bearer") return m[2];
  const decoded = Buffer.from(m[2] as string, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon >= 0 ? decoded.slice(colon + 1) : decoded;
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export function identify(
  headers: IncomingHttpHeaders,
  clients: readonly ClientToken[],
  fallback: string,
  gateway: boolean,
): Identity {
  if (clients.length === 0) return { ok: true, client: fallback, consumedAuthorization: false };
  let consumedAuthorization = false;
  let token = tokenFrom(headers["proxy-authorization"]);
  if (token === undefined && gateway && /^\s*Bearer\s/i.test(headers.authorization ?? "")) {
    token = tokenFrom(headers.authorization);
    consumedAuthorization = true;
  }
  if (token === undefined)
    return { ok: false, reason: "this proxy needs a client token (Proxy-Authorization: Bearer <token>)" };
  const digest = Buffer.from(hashToken(token), "hex");
  let found: string | undefined;
  for (const c of clients) {
    // Compare every entry in constant time: no early exit that leaks which prefix matched.
    if (timingSafeEqual(digest, Buffer.from(c.tokenSha256, "hex")) && found === undefined) found = c.name;
  }
  return found
    ? { ok: true, client: found, consumedAuthorization }
    : { ok: false, reason: "unknown client token" };
}
