import { readBoundedJson } from "../parsing/bounded-json.js";
import type { JsonLimits } from "../parsing/bounded-json.js";

/**
 * The wallet's usage answer (`GET /v1/me/usage`), read from every plausible shape. stoka
 * documents only "per-UTC-day USDC spend counters", and answers have been seen as
 * `{days: [...]}` and `{days: 7, series: [...]}`. A tolerant reader, but never a guessing one:
 *
 * - the list of days: `days`, `series`, `usage`, `daily` or `data`, as a list or as a map
 *   `{"2026-11-28": "1400"}`; a top-level list; or one level down (`{usage: {series: [...]}}`).
 *   A number under `days` is the window asked for, not data. Two lists at once is ambiguous.
 * - a day: an object with `date` or `day` (`YYYY-MM-DD`, or an ISO time at 00:00:00 UTC) and
 *   the amount as `spent_atomic`, `charged_atomic`, `amount_atomic` or `amount` (a whole
 *   number, string or integer; several of them must agree), or a pair `[date, amount]`.
 *   A day without an amount is an error, not a zero: reading "0" could mark a charged payment
 *   as not charged.
 * - payments, when listed (`payments` or `charges`, top level or inside a day): a tx hash
 *   (`tx`, `tx_hash`, `transaction`, `hash`; 64 hex), an amount as above, and when known a time
 *   (`at`, `created_at`, `settled_at`, `time`) or a date.
 * - `unit`, when present, must name atomic units (amounts in USDC with decimals are refused).
 *
 * Anything else fails with a message naming what was there: top-level keys and their types,
 * never values (a short date or unit string at most). Pure.
 *
 * @example
 * readUsage('{"days": 7, "series": [{"day": "2026-11-28", "charged_atomic": 1400}]}')
 *   // → { ok: true, usage: { days: [{ date: "2026-11-28", spentAtomic: 1400n }] }, shape: "series[] of days" }
 * readUsage('{"total": "5"}')
 *   // → { ok: false, reason: "no list of days found; got an object with keys: total (string)" }
 */
export interface UsageDayCount {
  date: string;
  spentAtomic: bigint;
}

export interface UsagePayment {
  /** Lowercase 64-hex hash, or null when the entry named none. */
  tx: string | null;
  amountAtomic: bigint;
  /** Epoch ms, when the entry had a time. */
  at?: number;
  /** UTC day: from the time, the entry's own date, or the day it was listed under. */
  date?: string;
}

export interface Usage {
  days: UsageDayCount[];
  /** Present only when the answer listed payments. */
  payments?: UsagePayment[];
}

export type UsageRead = { ok: true; usage: Usage; shape: string } | { ok: false; reason: string };

export const USAGE_JSON_LIMITS: JsonLimits = { maxBytes: 1024 * 1024, maxDepth: 8 };
const MAX_DAYS = 1000;
const MAX_PAYMENTS = 100_000;

const DAY_LIST_KEYS = ["days", "series", "usage", "daily", "data"] as const;
const PAYMENT_LIST_KEYS = ["payments", "charges"] as const;
const DATE_KEYS = ["date", "day"] as const;
const AMOUNT_KEYS = ["spent_atomic", "charged_atomic", "amount_atomic", "amount"] as const;
const TX_KEYS = ["tx", "tx_hash", "transaction", "hash"] as const;
const TIME_KEYS = ["at", "created_at", "settled_at", "time"] as const;

const DATE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;
const MIDNIGHT = /^([0-9]{4}-[0-9]{2}-[0-9]{2})T00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)$/;
const WHOLE = /^[0-9]{1,30}$/;
const TX = /^[0-9a-fA-F]{64}$/;

class ShapeError extends Error {}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `list of ${v.length}`;
  if (typeof v === "object") return "object";
  return typeof v;
}

/** A key as error text may show it: plain names only. */
function keyName(k: string): string {
  return /^[A-Za-z0-9_.-]{1,40}$/.test(k) ? k : "<a key not shown>";
}

/** "an object with keys: days (number), series (list of 7)" — names and types, no values. */
export function describeShape(v: unknown): string {
  if (Array.isArray(v)) {
    const kinds = [...new Set(v.slice(0, 20).map(typeName))].slice(0, 4);
    return `a list of ${v.length}${kinds.length ? ` (${kinds.join(", ")})` : ""}`;
  }
  if (!isObject(v)) return `a ${typeName(v)}`;
  const keys = Object.keys(v);
  if (keys.length === 0) return "an empty object";
  const shown = keys.slice(0, 12).map((k) => `${keyName(k)} (${typeName(v[k])})`);
  const more = keys.length > 12 ? `, and ${keys.length - 12} more` : "";
  return `an object with keys: ${shown.join(", ")}${more}`;
}

function validDate(text: string): boolean {
  const m = DATE.exec(text);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const t = new Date(Date.UTC(y, mo - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d;
}

function readDate(v: unknown, where: string): string {
  if (typeof v === "string") {
    const text = v.trim();
    if (validDate(text)) return text;
    const m = MIDNIGHT.exec(text);
    if (m && validDate(m[1] as string)) return m[1] as string;
  }
  throw new ShapeError(
    `${where} has a date that is not a UTC day (YYYY-MM-DD) but ${typeof v === "string" ? `a string of ${v.length} characters` : `a ${typeName(v)}`}`,
  );
}

function readAmount(v: unknown, where: string): bigint {
  if (typeof v === "string" && WHOLE.test(v.trim())) return BigInt(v.trim());
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw new ShapeError(
    `${where} has an amount that is not a whole number of atomic units (${typeof v === "number" ? (Number.isInteger(v) ? "an integer too large or negative" : "a fraction") : `a ${typeName(v)}`})`,
  );
}

/** The one amount of an entry: every amount key it has must agree. */
function amountOf(o: Json, where: string): bigint | null {
  let found: bigint | null = null;
  for (const k of AMOUNT_KEYS) {
    if (!(k in o)) continue;
    const a = readAmount(o[k], `${where}.${k}`);
    if (found !== null && a !== found)
      throw new ShapeError(
        `${where} has amounts that disagree (${AMOUNT_KEYS.filter((x) => x in o).join(", ")})`,
      );
    found = a;
  }
  return found;
}

function dateOf(o: Json, where: string): string | null {
  let found: string | null = null;
  for (const k of DATE_KEYS) {
    if (!(k in o)) continue;
    const d = readDate(o[k], `${where}.${k}`);
    if (found !== null && d !== found) throw new ShapeError(`${where} has a date and a day that disagree`);
    found = d;
  }
  return found;
}

function timeOf(o: Json): number | undefined {
  for (const k of TIME_KEYS) {
    const v = o[k];
    if (typeof v === "string" && /^[0-9]{4}-[0-9]{2}-[0-9]{2}T/.test(v)) {
      const ms = Date.parse(v);
      if (Number.isFinite(ms)) return ms;
    }
  }
  return undefined;
}

function readPayment(raw: unknown, where: string, dayDate: string | undefined): UsagePayment {
  if (!isObject(raw)) throw new ShapeError(`${where} is ${describeShape(raw)}, not a payment object`);
  const amount = amountOf(raw, where);
  if (amount === null) throw new ShapeError(`${where} has no amount; it is ${describeShape(raw)}`);
  let tx: string | null = null;
  for (const k of TX_KEYS) {
    const v = raw[k];
    if (typeof v === "string" && TX.test(v.trim())) {
      tx = v.trim().toLowerCase();
      break;
    }
  }
  const at = timeOf(raw);
  const own = dateOf(raw, where);
  const date = at !== undefined ? new Date(at).toISOString().slice(0, 10) : (own ?? dayDate);
  return { tx, amountAtomic: amount, ...(at !== undefined ? { at } : {}), ...(date ? { date } : {}) };
}

function readPayments(list: unknown, where: string, dayDate: string | undefined, out: UsagePayment[]): void {
  if (!Array.isArray(list))
    throw new ShapeError(`${where} is ${describeShape(list)}, not a list of payments`);
  if (out.length + list.length > MAX_PAYMENTS)
    throw new ShapeError(`more than ${MAX_PAYMENTS} payments listed`);
  list.forEach((p, i) => out.push(readPayment(p, `${where}[${i}]`, dayDate)));
}

function readDays(list: unknown, where: string, payments: UsagePayment[]): UsageDayCount[] {
  const days: UsageDayCount[] = [];
  if (isObject(list)) {
    // A map from day to amount.
    const entries = Object.entries(list);
    if (entries.length > MAX_DAYS) throw new ShapeError(`${where} lists more than ${MAX_DAYS} days`);
    for (const [k, v] of entries) {
      if (!validDate(k))
        throw new ShapeError(
          `${where} is an object whose keys are not all UTC days (${describeShape(list)})`,
        );
      days.push({ date: k, spentAtomic: readAmount(v, `${where}.${k}`) });
    }
    return days;
  }
  if (!Array.isArray(list)) throw new ShapeError(`${where} is ${describeShape(list)}, not a list of days`);
  if (list.length > MAX_DAYS) throw new ShapeError(`${where} lists more than ${MAX_DAYS} days`);
  list.forEach((d: unknown, i) => {
    const at = `${where}[${i}]`;
    if (Array.isArray(d)) {
      if (d.length !== 2) throw new ShapeError(`${at} is a list of ${d.length}, not a [date, amount] pair`);
      days.push({ date: readDate(d[0], `${at}[0]`), spentAtomic: readAmount(d[1], `${at}[1]`) });
      return;
    }
    if (!isObject(d)) throw new ShapeError(`${at} is ${describeShape(d)}, not a day`);
    const date = dateOf(d, at);
    if (date === null) throw new ShapeError(`${at} has no date or day; it is ${describeShape(d)}`);
    const spent = amountOf(d, at);
    if (spent === null)
      throw new ShapeError(`${at} has no amount (${AMOUNT_KEYS.join(", ")}); it is ${describeShape(d)}`);
    days.push({ date, spentAtomic: spent });
    for (const k of PAYMENT_LIST_KEYS) if (k in d) readPayments(d[k], `${at}.${k}`, date, payments);
  });
  return days;
}

function checkUnit(o: Json): void {
  if (!("unit" in o)) return;
  const u = o.unit;
  if (typeof u === "string" && /atomic/i.test(u)) return;
  const shown = typeof u === "string" && /^[A-Za-z0-9_ -]{1,32}$/.test(u) ? `"${u}"` : `a ${typeName(u)}`;
  throw new ShapeError(`the answer's unit is ${shown}, not atomic units; amounts cannot be read safely`);
}

function fromValue(value: unknown, depth: number): { usage: Usage; shape: string } {
  const payments: UsagePayment[] = [];
  let days: UsageDayCount[];
  let shape: string;
  let hasPayments = false;
  if (Array.isArray(value)) {
    days = readDays(value, "the answer", payments);
    shape = "a top-level list of days";
  } else if (isObject(value)) {
    checkUnit(value);
    const nested = DAY_LIST_KEYS.filter(
      (k) => isObject(value[k]) && DAY_LIST_KEYS.some((inner) => inner in (value[k] as Json)),
    );
    // A list, or a map whose keys are all UTC days; other objects are envelopes or metadata.
    const direct = DAY_LIST_KEYS.filter((k) => {
      const v = value[k];
      if (Array.isArray(v)) return true;
      return (
        isObject(v) && !nested.includes(k) && Object.keys(v).length > 0 && Object.keys(v).every(validDate)
      );
    });
    for (const k of PAYMENT_LIST_KEYS) {
      if (k in value) {
        readPayments(value[k], k, undefined, payments);
        hasPayments = true;
      }
    }
    if (direct.length > 1)
      throw new ShapeError(
        `the answer has several lists of days (${direct.join(", ")}); which one counts is ambiguous`,
      );
    if (direct.length === 1) {
      const k = direct[0] as string;
      days = readDays(value[k], k, payments);
      shape = `${k}${Array.isArray(value[k]) ? "[]" : "{}"} of days`;
    } else if (nested.length === 1 && depth === 0) {
      const k = nested[0] as string;
      const inner = fromValue(value[k], 1);
      days = inner.usage.days;
      if (inner.usage.payments) {
        payments.push(...inner.usage.payments);
        hasPayments = true;
      }
      shape = `${k}.${inner.shape}`;
    } else if (hasPayments && !DAY_LIST_KEYS.some((k) => k in value && typeof value[k] !== "number")) {
      days = [];
      shape = "payments only";
    } else {
      throw new ShapeError(`no list of days found; got ${describeShape(value)}`);
    }
  } else {
    throw new ShapeError(`the answer is ${describeShape(value)}, not an object or a list`);
  }
  const seen = new Set<string>();
  for (const d of days) {
    if (seen.has(d.date)) throw new ShapeError(`the answer lists ${d.date} more than once`);
    seen.add(d.date);
  }
  if (payments.length > 0) hasPayments = true;
  return { usage: hasPayments ? { days, payments } : { days }, shape };
}

/** Reads an already parsed usage value. */
export function usageFromValue(value: unknown): UsageRead {
  try {
    return { ok: true, ...fromValue(value, 0) };
  } catch (e) {
    if (e instanceof ShapeError) return { ok: false, reason: e.message };
    throw e;
  }
}

/** Reads the body of a usage answer within bounds (size, nesting). */
export function readUsage(body: string, limits: JsonLimits = USAGE_JSON_LIMITS): UsageRead {
  const parsed = readBoundedJson(body, limits);
  if (!parsed.ok) return { ok: false, reason: `the usage answer is unreadable: ${parsed.reason}` };
  return usageFromValue(parsed.value);
}
