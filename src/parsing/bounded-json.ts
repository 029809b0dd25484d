/**
 * JSON from an upstream or a client, read within bounds. `JSON.parse` itself copes with deep
 * nesting, but what reads the value afterwards (`JSON.stringify`, spreads, recursive walks) does
 * not: a 402 body of 100 000 `[` turned into a stack overflow and a 500. So the text is refused
 * before parsing when it is larger than `maxBytes` or nests deeper than `maxDepth` (counted on
 * `[` and `{` outside strings, in one linear pass). Pure: no I/O.
 */
export interface JsonLimits {
  /** UTF-8 bytes. */
  maxBytes: number;
  /** Nesting of arrays and objects; `[]` is depth 1, a scalar depth 0. */
  maxDepth: number;
}

/** Deep enough for every x402 and stoka document (they nest four or five levels). */
export const DEFAULT_JSON_LIMITS: JsonLimits = { maxBytes: 256 * 1024, maxDepth: 32 };

export type BoundedJson = { ok: true; value: unknown } | { ok: false; reason: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACKET = 0x5d;
const CLOSE_BRACE = 0x7d;

/** The deepest nesting in `text`, stopping as soon as it passes `limit`. */
export function nestingDepth(text: string, limit = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH)
        i++; // the escaped character cannot end the string
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if ((c === CLOSE_BRACKET || c === CLOSE_BRACE) && depth > 0) depth--;
  }
  return deepest;
}

/**
 * @example
 * readBoundedJson('{"a":[1]}') // → { ok: true, value: { a: [1] } }
 * readBoundedJson("[".repeat(100) + "]".repeat(100)) // → { ok: false, reason: "JSON nests deeper than 32 levels" }
 */
export function readBoundedJson(text: string, limits: JsonLimits = DEFAULT_JSON_LIMITS): BoundedJson {
  // UTF-16 length is a cheap lower bound of the UTF-8 size; count exactly only when close.
  if (text.length > limits.maxBytes || Buffer.byteLength(text, "utf8") > limits.maxBytes)
    return { ok: false, reason: `JSON is larger than ${limits.maxBytes} bytes` };
  if (nestingDepth(text, limits.maxDepth) > limits.maxDepth)
    return { ok: false, reason: `JSON nests deeper than ${limits.maxDepth} levels` };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: "not JSON" };
  }
}

/** `JSON.parse` within bounds: throws a SyntaxError for text that is too large, too deep or not JSON. */
export function parseBoundedJson(text: string, limits: JsonLimits = DEFAULT_JSON_LIMITS): unknown {
  const r = readBoundedJson(text, limits);
  if (!r.ok) throw new SyntaxError(r.reason);
  return r.value;
}
