/**
 * A tiny HTML builder that escapes by default: every value interpolated into `html\`…\`` is
 * text (escaped for both element content and quoted attribute values) unless it is itself a
 * `SafeHtml` built by this module. So a route name like `<script>` can never become markup,
 * whatever template it lands in. Pure.
 *
 * @example
 *   html`<td title="${tx}">${route}</td>`.text  // tx and route escaped
 */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type HtmlValue =
  SafeHtml | string | number | bigint | boolean | null | undefined | readonly HtmlValue[];

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
  "`": "&#96;",
};

/** Escapes text for element content and for single- or double-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (ch) => ESCAPES[ch] as string);
}

function render(value: HtmlValue): string {
  if (value instanceof SafeHtml) return value.text;
  if (value === null || value === undefined || value === false) return "";
  if (Array.isArray(value)) return value.map((v: HtmlValue) => render(v)).join("");
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? "");
  return new SafeHtml(out);
}

/** Markup written by this program (never data), e.g. the stylesheet. */
export function trusted(text: string): SafeHtml {
  return new SafeHtml(text);
}
