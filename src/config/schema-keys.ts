import type { z } from "zod";

/**
 * The keys a configuration object may hold at a path of the file's schema, for refusals of an
 * unknown key ("the keys here are …", "did you mean …"). Pure: reads the schema's own
 * definition (zod 4 `_zod.def`), so the list is never out of date with what is accepted.
 */
type Def = {
  type?: string;
  innerType?: unknown;
  in?: unknown;
  shape?: Record<string, unknown>;
  valueType?: unknown;
  element?: unknown;
};

function defOf(schema: unknown): Def | undefined {
  return (schema as { _zod?: { def?: Def } } | undefined)?._zod?.def;
}

const WRAPPERS = new Set(["optional", "default", "nullable", "prefault", "readonly", "catch"]);

function unwrap(schema: unknown): unknown {
  let s = schema;
  for (let i = 0; i < 16; i++) {
    const d = defOf(s);
    if (d?.type && WRAPPERS.has(d.type)) s = d.innerType;
    else if (d?.type === "pipe") s = d.in;
    else return s;
  }
  return s;
}

export function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] | null {
  let s = unwrap(schema);
  for (const p of path) {
    const d = defOf(s);
    if (d?.type === "object" && d.shape) s = unwrap(d.shape[String(p)]);
    else if (d?.type === "record") s = unwrap(d.valueType);
    else if (d?.type === "array") s = unwrap(d.element);
    else return null;
  }
  const d = defOf(s);
  return d?.type === "object" && d.shape ? Object.keys(d.shape) : null;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const here = row[j] as number;
      row[j] = Math.min(here + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = here;
    }
  }
  return row[b.length] as number;
}

/** The known key closest to `unknown` (at most 2 edits, or a prefix), if any. */
export function closestKey(unknown: string, known: readonly string[]): string | undefined {
  let best: { key: string; d: number } | undefined;
  for (const k of known) {
    const d = k.startsWith(unknown) || unknown.startsWith(k) ? 1 : distance(unknown, k);
    if (d <= 2 && (!best || d < best.d)) best = { key: k, d };
  }
  return best?.key;
}
