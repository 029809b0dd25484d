/**
 * Secret-looking values kept out of error text, logs and the ledger. Pure.
 *
 * A value is secret-looking when it is shaped like a Stellar secret seed (`S` + 55 base32
 * characters, anywhere in it) or like a long random token (mixed-case letters and digits, long
 * hex, or a long base64/base64url run). The rules err on the side of hiding: a hidden harmless
 * value costs a look at the config, a shown seed costs the wallet.
 */
export type SecretKind = "stellar_seed" | "token";

export const REDACTED = "REDACTED";

const SEED = /S[A-Z2-7]{55}/;
const SEEDS = /S[A-Z2-7]{55}/g;
const PUBLIC_STRKEY = /^[GCM][A-Z2-7]{55}(?:[A-Z2-7]{13})?$/;
const TOKEN_ALPHABET = /^[A-Za-z0-9_\-+/=.~]+$/;
const WELL_KNOWN_PREFIX =
  /^(?:(?:sk|pk|rk)_(?:live|test)_|gh[pousr]_|github_pat_|xox[abprs]-|glpat-|AKIA|eyJ)/;

function mixedClasses(s: string): boolean {
  return /[a-z]/.test(s) && /[A-Z]/.test(s) && /[0-9]/.test(s);
}

/** What kind of secret `value` looks like, if any. */
export function secretKind(value: string): SecretKind | null {
  if (SEED.test(value)) return "stellar_seed";
  const v = value.trim().replace(/^Bearer\s+/i, "");
  if (v.length < 16 || !TOKEN_ALPHABET.test(v)) return null;
  if (PUBLIC_STRKEY.test(v)) return null; // an account, contract or muxed address: public
  if (WELL_KNOWN_PREFIX.test(v)) return "token";
  if (v.length >= 20 && mixedClasses(v)) return "token";
  // A long random base64(url) token may hold no digit by chance (~0.4% at 32 chars).
  if (v.length >= 24 && /[a-z]/.test(v) && /[A-Z]/.test(v)) return "token";
  if (/^[0-9a-fA-F]{32,}$/.test(v)) return "token";
  if (v.length >= 40 && /[0-9]/.test(v) && /[A-Za-z]/.test(v)) return "token";
  return null;
}

const SEED_ADVICE =
  "a Stellar secret seed (not shown) — seeds belong in STELLAR_SECRET or wallet.secret_file, never in this field";
const TOKEN_ADVICE =
  "a value that looks like a token or secret (not shown) — secrets belong in the environment or a file, never in this field";

/**
 * A value as error text may show it: quoted when harmless, else what it looks like.
 * @example
 * describeValue("tset") // → '"tset"'
 * describeValue(Keypair.random().secret()) // → "a Stellar secret seed (not shown) — …"
 */
export function describeValue(value: string, maxShown = 64): string {
  const kind = secretKind(value);
  if (kind === "stellar_seed") return SEED_ADVICE;
  if (kind === "token") return TOKEN_ADVICE;
  if (value.length > maxShown) return `a value of ${value.length} characters (not shown)`;
  return JSON.stringify(value);
}

/**
 * Free text (an error message, a library's message) with every secret-looking piece replaced.
 * Pieces are runs without `/`, `.` or `:` so file paths and addresses stay readable.
 */
export function scrubSecrets(text: string): string {
  return text
    .replace(SEEDS, "[a Stellar secret seed, not shown]")
    .replace(/[A-Za-z0-9_\-+=~]{20,}/g, (run) =>
      secretKind(run) === "token" ? "[a token, not shown]" : run,
    );
}

/** Query parameter names that carry credentials (RFC 6749 `access_token`, AWS `X-Amz-Signature`, …). */
const SECRET_NAME_WORDS = new Set([
  "key",
  "token",
  "secret",
  "password",
  "passwd",
  "pass",
  "pwd",
  "auth",
  "signature",
  "sig",
  "credential",
  "credentials",
  "session",
  "jwt",
  "bearer",
  "private",
  "seed",
]);
const SECRET_NAME_PARTS = [
  "token",
  "secret",
  "passw",
  "credential",
  "signature",
  "apikey",
  "accesskey",
  "auth",
];

/** Whether a query parameter name says it holds a secret (case-insensitive). */
export function isSecretParamName(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
  if (words.some((w) => SECRET_NAME_WORDS.has(w))) return true;
  const squashed = words.join("");
  return SECRET_NAME_PARTS.some((p) => squashed.includes(p));
}

function decodeQueryPart(part: string): string {
  try {
    return decodeURIComponent(part.replace(/\+/g, " "));
  } catch {
    return part;
  }
}

/**
 * A query string with the values of secret-looking parameters replaced (names kept, order and
 * the encoding of the other parameters unchanged). Takes and returns the text after `?`.
 * @example
 * redactQuery("api_key=abc&days=7") // → "api_key=REDACTED&days=7"
 */
export function redactQuery(query: string): string {
  return query
    .split("&")
    .map((part) => {
      const eq = part.indexOf("=");
      const rawName = eq < 0 ? part : part.slice(0, eq);
      const name = decodeQueryPart(rawName);
      if (eq < 0) return secretKind(name) ? REDACTED : part;
      const value = decodeQueryPart(part.slice(eq + 1));
      if (isSecretParamName(name) || secretKind(value) || secretKind(name))
        return `${secretKind(name) ? REDACTED : rawName}=${REDACTED}`;
      return part;
    })
    .join("&");
}

/**
 * A URL as the ledger and logs keep it: origin and path, no user info or fragment, and the query
 * with secret-looking values redacted. A seed-shaped path segment is redacted too.
 * @example
 * redactUrl("https://h/v1/usage?api_key=abc&days=7") // → "https://h/v1/usage?api_key=REDACTED&days=7"
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    const q = url.indexOf("?");
    const path = (q < 0 ? url : url.slice(0, q)).split("#")[0] ?? "";
    return `${path.replace(SEEDS, REDACTED)}${q < 0 ? "" : `?${redactQuery(url.slice(q + 1).split("#")[0] ?? "")}`}`;
  }
  const path = u.pathname.replace(SEEDS, REDACTED);
  const query = u.search.length > 1 ? `?${redactQuery(u.search.slice(1))}` : "";
  const origin = u.origin === "null" ? `${u.protocol}//${u.host}` : u.origin;
  return `${origin}${path}${query}`;
}
