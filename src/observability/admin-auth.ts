import { timingSafeEqual } from "node:crypto";

/**
 * The one check behind every admin endpoint that changes something (docs/operations.md, Kill
 * switch and dry run): `Authorization: Bearer <token>` against the configured admin token
 * (`admin.token_file` or `STOKA_PROXY_ADMIN_TOKEN`), in constant time. No token configured
 * means the endpoints are off (403 saying how to turn them on), never open. Pure.
 *
 * @example
 * checkAdminToken("Bearer s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret") // → { ok: true }
 * checkAdminToken(undefined, undefined) // → { ok: false, status: 403, … }
 */
export type AdminAuth =
  | { ok: true }
  | {
      ok: false;
      status: 401 | 403;
      code: "admin_unauthorized" | "admin_disabled";
      error: string;
      hint: string;
    };

export function checkAdminToken(authorization: string | undefined, token: string | undefined): AdminAuth {
  if (!token)
    return {
      ok: false,
      status: 403,
      code: "admin_disabled",
      error: "admin endpoints are off: no admin token is configured",
      hint: "set admin.token_file (a file holding a long random token) or STOKA_PROXY_ADMIN_TOKEN, then restart",
    };
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
  const given = Buffer.from(m?.[1] ?? "");
  const want = Buffer.from(token);
  // Compared in constant time, and only when the lengths match (timingSafeEqual requires it).
  const ok = m !== null && given.length === want.length && timingSafeEqual(given, want);
  return ok
    ? { ok: true }
    : {
        ok: false,
        status: 401,
        code: "admin_unauthorized",
        error: "missing or wrong admin token",
        hint: "send Authorization: Bearer <the admin token>",
      };
}
