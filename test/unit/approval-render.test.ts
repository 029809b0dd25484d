import { describe, expect, it } from "vitest";
import { escapeHtml } from "../../src/operator/status/html.js";
import { renderStatusPage } from "../../src/operator/status/render.js";
import { HOSTILE, NOW_MS, sampleView } from "../support/status-fixture.js";

/** The approvals panel: escaped data, forms that post only to this origin, no token in the page. */
const approval = (id: string, text: string) => ({
  id,
  amount: 6_000_000n,
  route: text,
  client: text,
  method: "POST",
  host: "test.api.stoka.space",
  path: `/v1/${text}`,
  budgets: ["team"],
  reasons: [text],
  requestedAtMs: NOW_MS - 5_000,
  deadlineMs: NOW_MS + 55_000,
});

describe("the approvals panel", () => {
  it("is left out when the page has no approvals, and says none when nothing waits", () => {
    expect(renderStatusPage(sampleView())).not.toContain('id="approvals"');
    const none = renderStatusPage({ ...sampleView(), approvals: [] });
    expect(none).toMatch(/id="approvals"[^>]*data-count="0"/);
    expect(none).not.toContain("<form");
  });

  it("escapes every name, and each form posts to its own approval on this origin", () => {
    const hostile = Object.values(HOSTILE).join(" ");
    const page = renderStatusPage({
      ...sampleView(),
      approvals: [approval("0a1b2c3d4e5f", hostile), approval("ffeeddccbbaa", "plain")],
    });
    expect(page).toMatch(/id="approvals"[^>]*data-count="2"/);
    for (const s of Object.values(HOSTILE)) expect(page).not.toContain(s);
    expect(page).toContain(escapeHtml(hostile));
    const forms = page.match(/<form[^>]*>/g) ?? [];
    expect(forms).toEqual([
      '<form class="decide" method="post" action="/approvals/0a1b2c3d4e5f/approve">',
      '<form class="decide" method="post" action="/approvals/ffeeddccbbaa/approve">',
    ]);
    expect(page.match(/formaction="[^"]*"/g)).toEqual([
      'formaction="/approvals/0a1b2c3d4e5f/deny"',
      'formaction="/approvals/ffeeddccbbaa/deny"',
    ]);
    // The token field is empty: the operator types the token, the page never holds it.
    for (const input of page.match(/<input[^>]*name="token"[^>]*>/g) ?? [])
      expect(input).not.toMatch(/value=/);
    expect(page).not.toMatch(/<script/i);
    expect(page).toContain("0.6 USDC");
  });
});
