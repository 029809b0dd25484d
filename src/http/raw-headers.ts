import type { IncomingHttpHeaders } from "node:http";

/**
 * Node's `IncomingMessage.headers` built from the raw name/value pairs undici hands over, with
 * Node's rules for repeated fields, so the code that reads an answer sees the same object
 * whichever client fetched it: `set-cookie` is a list (RFC 6265 §3 forbids folding it),
 * `cookie` joins with "; ", the single-valued fields Node keeps the first of, the rest join
 * with ", " (RFC 9110 §5.3). Names are lower-cased; bytes are read as latin1, as Node does.
 */
const FIRST_WINS = new Set([
  "age",
  "authorization",
  "content-length",
  "content-type",
  "etag",
  "expires",
  "from",
  "host",
  "if-modified-since",
  "if-unmodified-since",
  "last-modified",
  "location",
  "max-forwards",
  "proxy-authorization",
  "referer",
  "retry-after",
  "server",
  "user-agent",
]);

export function headersFromRaw(raw: readonly (Buffer | string)[]): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = String(
      raw[i] instanceof Buffer ? (raw[i] as Buffer).toString("latin1") : raw[i],
    ).toLowerCase();
    const r = raw[i + 1] as Buffer | string;
    const value = typeof r === "string" ? r : r.toString("latin1");
    // Node's parser drops `__proto__`; an own-property check keeps `constructor` and the
    // other Object.prototype names from reading as a value already there.
    if (name === "__proto__") continue;
    const had = Object.hasOwn(out, name) ? out[name] : undefined;
    if (had === undefined) {
      out[name] = name === "set-cookie" ? [value] : value;
    } else if (name === "set-cookie") {
      (had as string[]).push(value);
    } else if (!FIRST_WINS.has(name)) {
      out[name] = `${had as string}${name === "cookie" ? "; " : ", "}${value}`;
    }
  }
  return out;
}
