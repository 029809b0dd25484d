import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildStatusView } from "../../src/operator/status/build-view.js";
import { escapeHtml, html } from "../../src/operator/status/html.js";
import { renderStatusPage } from "../../src/operator/status/render.js";
import { HOSTILE, NOW_MS, sampleInput, sampleView } from "../support/status-fixture.js";

/** The page is one self-contained document; every string from data is escaped. */

describe("escaping", () => {
  it.each([
    ["<script>", "&lt;script&gt;"],
    [`"'&\``, "&quot;&#39;&amp;&#96;"],
    ["plain", "plain"],
  ])("escapeHtml(%s)", (input, out) => {
    expect(escapeHtml(input)).toBe(out);
  });

  it("the html template escapes values and keeps nested templates", () => {
    const inner = html`<b>${"<i>"}</b>`;
    expect(html`<p title="${'"x"'}">${inner}${["<", 1n, null, undefined, false]}</p>`.text).toBe(
      '<p title="&quot;x&quot;"><b>&lt;i&gt;</b>&lt;1</p>',
    );
  });

  it("hostile names, reasons and hashes never become markup", () => {
    const page = renderStatusPage(sampleView());
    for (const s of Object.values(HOSTILE)) {
      expect(page).not.toContain(s);
      expect(page).toContain(escapeHtml(s));
    }
    expect(page).not.toMatch(/<script|<img|<iframe/i);
  });

  it("whatever a route or client name holds, it adds no markup characters", () => {
    const count = (s: string) => {
      const c = { "<": 0, ">": 0, '"': 0, "'": 0, "`": 0 } as Record<string, number>;
      for (const ch of s) if (ch in c) c[ch] = (c[ch] as number) + 1;
      return c;
    };
    const pageWith = (name: string) => {
      const input = sampleInput();
      input.payments = input.payments.map((p) => ({
        ...p,
        route: name,
        client: name,
        reason: name,
        tx: name,
      }));
      return renderStatusPage(buildStatusView(input, () => NOW_MS));
    };
    const baseline = count(pageWith("x"));
    fc.assert(
      fc.property(fc.string({ unit: "binary", minLength: 1, maxLength: 40 }), (name) => {
        expect(count(pageWith(name))).toEqual(baseline);
      }),
      { numRuns: 200 },
    );
  });
});

describe("the document", () => {
  const view = sampleView();
  const page = renderStatusPage(view);

  it("is complete and self-contained: no scripts, no external assets, no handlers", () => {
    expect(page.startsWith("<!doctype html>")).toBe(true);
    expect(page.trimEnd().endsWith("</html>")).toBe(true);
    expect(page).toMatch(/<meta charset="utf-8"\s*\/?>/);
    // Escaped data has no "<", so every tag in the text is the renderer's own.
    const tags = page.match(/<[^>]*>/g) ?? [];
    expect(tags.length).toBeGreaterThan(100);
    for (const tag of tags) {
      expect(tag).not.toMatch(
        /^<(script|img|iframe|object|embed|link(?! rel="icon" href="data:,")|base|form)\b/i,
      );
      expect(tag).not.toMatch(/\shref="(?!#|data:)/i);
      // Attribute values (escaped: they hold no quote) may spell anything; the names may not.
      const names = tag.replace(/"[^"]*"/g, '""');
      expect(names).not.toMatch(/\s(src|srcset|action|formaction)=/i);
      expect(names).not.toMatch(/\son[a-z]+=/i);
    }
    const style = /<style>([\s\S]*?)<\/style>/.exec(page)?.[1] ?? "";
    expect(style).not.toMatch(/url\(|@import/i);
  });

  it("shows amounts in USDC with the atomic value on hover", () => {
    expect(page).toContain(
      '<span class="usdc" data-atomic="2500000" title="2500000 atomic units">0.25 USDC</span>',
    );
    expect(page).toContain('data-atomic="1400" title="1400 atomic units">0.00014 USDC</span>');
  });

  it("draws budget bars as parts of the limit, clamped and flagged when over", () => {
    // day: 12 501 400 spent + 5 000 reserved of 50 000 000
    expect(page).toMatch(
      /data-budget="daily"\s+data-period="day"\s+data-limit="50000000"\s+data-spent="12501400"\s+data-reserved="5000"\s+data-over="false"/,
    );
    expect(page).toContain('<div class="spent" style="width:25.00%"></div>');
    expect(page).toContain('<div class="reserved" style="width:0.01%"></div>');
    // month: 42 506 499 used of 40 000 000
    expect(page).toMatch(/class="limit over"\s+data-budget="daily"\s+data-period="month"/);
    expect(page).toContain('<div class="spent" style="width:100.00%"></div>');
    expect(page).toContain("over the limit");
    expect(page).toMatch(/\(<span class="used-pct"\s*>106\.3\u00a0%<\/span\s*>\)/);
  });

  it("lists indeterminate payments first and says what to do", () => {
    const ids = [...page.matchAll(/data-payment-id="([^"]+)"/g)].map((m) => m[1]);
    expect(ids).toEqual(["pay-3", "pay-7", "pay-4", "pay-2", "pay-1", "pay-5", "pay-6"]);
    expect(page).toContain('id="indeterminate"');
    expect(page).toContain("<code>stoka-proxy reconcile</code>");
    expect(page).toContain("stoka-proxy reconcile --resolve");
  });

  it("caps the list and says how many were left out", () => {
    const big = renderStatusPage(sampleView({ manyOld: 100 }));
    expect([...big.matchAll(/data-payment-id=/g)]).toHaveLength(50);
    expect(big).toContain("(57 older not shown");
  });

  it("shows the CA fingerprint and the trust command", () => {
    expect(page).toContain(`<code class="fingerprint">${view.ca?.fingerprintSha256}</code>`);
    expect(page).toContain("<code>stoka-proxy ca</code>");
  });

  it("shows breakers and the kill switch when the view has them", () => {
    expect(page).toContain('id="breakers"');
    expect(page).toContain('data-breaker="test.api.stoka.space" data-state="open"');
    expect(page).toContain('id="killswitch"');
    expect(page).toContain("Kill switch: off");
  });

  it("leaves out what the view does not have", () => {
    const input = sampleInput();
    delete input.breakers;
    delete input.killSwitch;
    delete input.ca;
    input.payments = input.payments.filter((p) => p.state !== "indeterminate");
    const bare = renderStatusPage(buildStatusView(input, () => NOW_MS));
    for (const id of ["breakers", "killswitch", "ca", "indeterminate"])
      expect(bare).not.toContain(`id="${id}"`);
  });

  it("says when the budget store cannot be read, escaping the reason", () => {
    const input = sampleInput();
    input.budgets = [];
    input.budgetsUnavailable = "redis <down>: connect ECONNREFUSED";
    const page = renderStatusPage(buildStatusView(input, () => NOW_MS));
    expect(page).toContain('id="budgets-unavailable"');
    expect(page).toContain("redis &lt;down&gt;: connect ECONNREFUSED");
    expect(page).not.toContain("No budgets are configured");
    expect(renderStatusPage(sampleView())).not.toContain('id="budgets-unavailable"');
  });

  it("says so when nothing is configured or paid", () => {
    const empty = renderStatusPage(buildStatusView({ payments: [], budgets: [] }, () => NOW_MS));
    expect(empty).toContain("No budgets are configured, so nothing is paid.");
    expect(empty).toContain("no payments yet");
    expect(empty).toContain("nothing paid");
  });
});
