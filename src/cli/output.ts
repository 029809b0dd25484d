/**
 * How the commands print: one JSON style for every `--json` (snake_case keys, amounts as
 * atomic-unit strings), aligned tables for people, and a progress line on stderr only when a
 * person watches it (a TTY), so pipes and files never see it.
 */
export type Out = (text: string) => void;

function snakeKey(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Deep copy with snake_case keys and bigints as decimal strings (never a float). */
export function toJsonValue(value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [snakeKey(k), toJsonValue(v)]));
  }
  return value;
}

export function jsonLine(value: unknown): string {
  return `${JSON.stringify(toJsonValue(value))}\n`;
}

/** Columns padded to their widest cell; columns listed in `right` are right-aligned (amounts). */
export function table(header: string[], rows: string[][], right: readonly number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].map((l) => `${l}\n`).join("");
}

export interface Progress {
  update(text: string): void;
  done(): void;
}

export const NO_PROGRESS: Progress = { update: () => undefined, done: () => undefined };

/** A line rewritten in place on a TTY, at most every 100 ms; nothing at all elsewhere. */
export function progressLine(stream: NodeJS.WriteStream, minIntervalMs = 100): Progress {
  if (!stream.isTTY) return NO_PROGRESS;
  let last = 0;
  let shown = false;
  return {
    update(text) {
      const now = Date.now();
      if (now - last < minIntervalMs) return;
      last = now;
      shown = true;
      stream.write(`\r\x1b[K${text}`);
    },
    done() {
      if (shown) stream.write("\r\x1b[K");
    },
  };
}
