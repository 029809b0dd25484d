/**
 * `Retry-After` (RFC 9110 §10.2.3): `HTTP-date / delay-seconds`, read as a tolerant but exact
 * reader. `delay-seconds` is `1*DIGIT`; an HTTP-date is one of the three formats of RFC 9110
 * §5.6.7 (IMF-fixdate, the obsolete RFC 850 and asctime forms, which recipients must accept).
 * Anything else (`1.5`, `-3`, `soon`, a list of two values, a date like `2026-11-28`) is garbage
 * and ignored: the caller then falls back to its own backoff. Pure: the clock is an argument.
 *
 * A value longer than `capMs` is reported capped (`exceedsCap`), never trusted as is: a server
 * asking for a day must not park a request for a day, and a 30-digit number must not overflow.
 *
 * @example
 * parseRetryAfter("120", 0, 600_000) // → { delayMs: 120_000, exceedsCap: false }
 * parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", Date.parse("1994-11-06T08:49:30Z"), 600_000)
 *   // → { delayMs: 7_000, exceedsCap: false }
 * parseRetryAfter("soon", 0, 600_000) // → null
 */
export interface RetryAfter {
  /** How long to wait from `nowMs`, at most `capMs`; 0 for a date in the past. */
  delayMs: number;
  /** The server asked for longer than `capMs`. */
  exceedsCap: boolean;
}

/** A header as Node hands it over: absent, one value, or repeated values. */
export type HeaderValue = string | readonly string[] | undefined;

const DELAY_SECONDS = /^[0-9]+$/;

const DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const DAY_NAMES_LONG = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// HTTP-date is case-sensitive (RFC 9110 §5.6.7).
const IMF_FIXDATE =
  /^([A-Z][a-z]{2}), ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/;
const RFC850_DATE =
  /^([A-Z][a-z]{5,8}), ([0-9]{2})-([A-Z][a-z]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT$/;
const ASCTIME_DATE =
  /^([A-Z][a-z]{2}) ([A-Z][a-z]{2}) ([0-9]{2}| [0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([0-9]{4})$/;

function utcMs(year: number, month: string, day: number, h: number, m: number, s: number): number | null {
  const mi = MONTHS.indexOf(month);
  if (mi < 0 || h > 23 || m > 59 || s > 60 || day < 1) return null;
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0–99 as 1900–1999.
  const d = new Date(0);
  d.setUTCFullYear(year, mi, day);
  // 31 Feb rolls into March: such a date is garbage, not a date.
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== mi || d.getUTCDate() !== day) return null;
  // A leap second (60) is valid syntax; it is read as the next second.
  return d.getTime() + ((h * 60 + m) * 60 + s) * 1000;
}

/**
 * The instant an HTTP-date names, or null when `text` is not exactly one of the three formats.
 * `nowMs` resolves the RFC 850 two-digit year: a year that would be more than 50 years in the
 * future is the most recent past year with the same last two digits (RFC 9110 §5.6.7).
 */
export function parseHttpDate(text: string, nowMs: number): number | null {
  let m = IMF_FIXDATE.exec(text);
  if (m) {
    const [, dn, d, mon, y, hh, mm, ss] = m as unknown as string[];
    if (!DAY_NAMES.includes(dn as string)) return null;
    return utcMs(Number(y), mon as string, Number(d), Number(hh), Number(mm), Number(ss));
  }
  m = RFC850_DATE.exec(text);
  if (m) {
    const [, dn, d, mon, yy, hh, mm, ss] = m as unknown as string[];
    if (!DAY_NAMES_LONG.includes(dn as string)) return null;
    const nowYear = new Date(nowMs).getUTCFullYear();
    let year = Math.floor(nowYear / 100) * 100 + Number(yy);
    if (year > nowYear + 50) year -= 100;
    return utcMs(year, mon as string, Number(d), Number(hh), Number(mm), Number(ss));
  }
  m = ASCTIME_DATE.exec(text);
  if (m) {
    const [, dn, mon, d, hh, mm, ss, y] = m as unknown as string[];
    if (!DAY_NAMES.includes(dn as string)) return null;
    return utcMs(Number(y), mon as string, Number((d as string).trim()), Number(hh), Number(mm), Number(ss));
  }
  return null;
}

/** One header value (or a repeated header whose copies agree), trimmed of optional whitespace. */
function singleValue(value: HeaderValue): string | null {
  if (value === undefined) return null;
  if (typeof value === "string") return value.trim();
  const distinct = new Set(value.map((v) => v.trim()));
  return distinct.size === 1 ? [...distinct][0]! : null;
}

export function parseRetryAfter(value: HeaderValue, nowMs: number, capMs: number): RetryAfter | null {
  const text = singleValue(value);
  if (text === null || text === "") return null;
  let delayMs: number;
  if (DELAY_SECONDS.test(text)) {
    // Long digit strings would lose precision as numbers; anything past the cap is "too long".
    const capSeconds = Math.ceil(capMs / 1000);
    const stripped = text.replace(/^0+(?=[0-9])/, "");
    if (stripped.length > String(capSeconds).length) return { delayMs: capMs, exceedsCap: true };
    delayMs = Number(stripped) * 1000;
  } else {
    const at = parseHttpDate(text, nowMs);
    if (at === null) return null;
    delayMs = Math.max(0, at - nowMs);
  }
  if (delayMs > capMs) return { delayMs: capMs, exceedsCap: true };
  return { delayMs, exceedsCap: false };
}
