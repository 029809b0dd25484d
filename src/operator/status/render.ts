import { formatUsdc } from "../../stellar/amount.js";
import { html, trusted } from "./html.js";
import type { HtmlValue, SafeHtml } from "./html.js";
import type {
  ApprovalView,
  BreakerView,
  BudgetLimitView,
  BudgetView,
  CaView,
  KillSwitchView,
  PaymentStateName,
  PaymentView,
  RecentPayments,
  SpendRow,
  SpendTable,
  StatusView,
} from "./view.js";

/**
 * The operator's status page: one self-contained HTML document (inline CSS, no scripts, no
 * external assets), so it works under `Content-Security-Policy: default-src 'none';
 * style-src 'unsafe-inline'; img-src data:`. Every string from the view is data and goes
 * through the escaping `html` template. Amounts are shown in USDC with the atomic value in the
 * `title` (hover) and in `data-atomic`. Pure: the view holds every number already computed.
 */

/** Sent with the page by whoever serves it; the page needs nothing more. */
export const STATUS_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const STYLE = trusted(`
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#fff;--panel:#f6f8fa;--line:#d1d9e0;
--spent:#0969da;--reserved:#bf8700;--bad:#cf222e;--ok:#1a7f37;--warn:#9a6700}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--panel:#151b23;
--line:#3d444d;--spent:#4493f8;--reserved:#d29922;--bad:#f85149;--ok:#3fb950;--warn:#d29922}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:1200px;margin:0 auto;padding:0 16px}
header{padding-top:16px;border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:24px 0 8px}
h3{font-size:14px;margin:12px 0 4px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.muted{color:var(--muted)}
dl.facts{display:flex;flex-wrap:wrap;gap:4px 20px;margin:8px 0 12px}
dl.facts div{display:flex;gap:6px}dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 12px;margin:8px 0}
.panel h2{margin-top:4px}.alert{border-color:var(--bad)}.alert h2{color:var(--bad)}
.limit{display:grid;grid-template-columns:120px minmax(160px,1fr) 460px;gap:10px;align-items:center;margin:4px 0}
@media (max-width:800px){.limit{grid-template-columns:1fr}}
.bar{display:flex;height:14px;background:var(--line);border-radius:3px;overflow:hidden}
.bar .spent{background:var(--spent)}
.bar .reserved{background:var(--reserved)}
.limit.over .bar{outline:2px solid var(--bad);outline-offset:1px}
.flag{color:var(--bad);font-weight:600}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.legend .k-spent{background:var(--spent)}.legend .k-reserved{background:var(--reserved)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600}
td.num,th.num{text-align:right;white-space:nowrap}
td.tx{max-width:180px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.reason{max-width:320px;overflow-wrap:anywhere}
.state{font-weight:600}
.s-settled{color:var(--ok)}.s-indeterminate{color:var(--bad)}.s-rejected,.s-failed,.s-refused{color:var(--muted)}
.s-reserved,.s-sent{color:var(--warn)}
tr.indeterminate{background:color-mix(in srgb,var(--bad) 10%,transparent)}
ol.todo{margin:4px 0 4px 20px;padding:0}
form.decide{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:0}
form.decide input{font:inherit;padding:2px 6px;border:1px solid var(--line);border-radius:4px;background:var(--bg);color:var(--fg)}
form.decide button{font:inherit;padding:2px 10px;border:1px solid var(--line);border-radius:4px;cursor:pointer}
form.decide button.approve{background:var(--ok);color:#fff}form.decide button.deny{background:var(--bad);color:#fff}
footer{margin-top:24px;padding-bottom:24px;color:var(--muted);border-top:1px solid var(--line)}
`);

/** `2026-05-01 12:34:56 UTC`; the machine-readable ISO form goes in `datetime`. */
function time(ms: number): SafeHtml {
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.slice(0, 19).replace("T", " ")} UTC</time>`;
}

/** An amount in USDC, its atomic value on hover and in `data-atomic`. */
function usdc(atomic: bigint): SafeHtml {
  const a = atomic.toString();
  return html`<span class="usdc" data-atomic="${a}" title="${a} atomic units">${formatUsdc(atomic)}</span>`;
}

/** Basis points as a CSS percentage (a number this module computed, never data). */
function pct(bp: number): string {
  return `${(Math.max(0, Math.min(10_000, bp)) / 100).toFixed(2)}%`;
}

function percentText(bp: number): string {
  return `${(bp / 100).toFixed(1)}\u00a0%`;
}

function factsList(facts: StatusView["facts"]): HtmlValue {
  if (facts.length === 0) return null;
  return html`<dl class="facts">
    ${facts.map(
      (f) =>
        html`<div>
          <dt>${f.label}</dt>
          <dd>${f.value}</dd>
        </div>`,
    )}
  </dl>`;
}

const RECONCILE_STEPS = html`<ol class="todo">
  <li>
    Run <code>stoka-proxy reconcile</code>: it compares the ledger with stoka's own usage counters (<code
      >GET /v1/me/usage</code
    >) per UTC day. When a day's numbers decide it, <code>stoka-proxy reconcile --resolve</code> records the
    outcome: charged payments stay spent, uncharged ones are given back to their budgets.
  </li>
  <li>
    When the numbers cannot decide (several unknown payments on one day), check the object itself: fetch what
    the request stored, pushed or updated (for example <code>GET</code> the object) to see whether the paid
    call took effect; a transaction hash, when shown, can be looked up on a Stellar explorer.
  </li>
  <li>
    Do not repeat the request just to be sure: the first one may have been charged. Until reconciled, the
    amount stays counted against every budget it matched.
  </li>
</ol>`;

function indeterminateAlert(p: RecentPayments): HtmlValue {
  if (p.indeterminateCount === 0) return null;
  const shown = p.rows.filter((r) => r.state === "indeterminate").length;
  return html`<section id="indeterminate" class="panel alert" data-count="${p.indeterminateCount}">
    <h2>
      ${p.indeterminateCount} payment${p.indeterminateCount === 1 ? "" : "s"} with an unknown outcome
      (${usdc(p.indeterminateAmount)})
    </h2>
    <p>
      The payment was sent but the upstream's answer never confirmed or refused it (a 5xx, a timeout or a
      dropped connection after the paid retry). The wallet may or may not have been
      charged.${shown < p.indeterminateCount ? html` Only ${shown} of them fit in the list below.` : null}
    </p>
    ${RECONCILE_STEPS}
  </section>`;
}

/**
 * Payments waiting for a person, each with approve/deny buttons. The form posts the admin
 * token the operator types (the page never holds it) to this same origin: the token field is
 * what a page on another site cannot forge (observability/approval-routes.ts).
 */
function approvalsSection(approvals: ApprovalView[] | undefined): HtmlValue {
  if (approvals === undefined) return null;
  return html`<section
    id="approvals"
    class="panel${approvals.length > 0 ? " alert" : ""}"
    data-count="${approvals.length}"
  >
    <h2>Payments waiting for approval: ${approvals.length}</h2>
    ${
      approvals.length === 0
        ? html`<p class="muted">
            None. Budgets with <code>approval:</code> hold payments here until a person decides.
          </p>`
        : html`<p class="muted">
              Nothing is signed until approved; the budget holds the amount meanwhile. Past its deadline a
              payment is refused. Also: <code>stoka-proxy approvals</code>. This replica's payments only.
            </p>
            <table>
              <thead>
                <tr>
                  <th>requested</th>
                  <th>deadline</th>
                  <th class="num">amount</th>
                  <th>request</th>
                  <th>client</th>
                  <th>why</th>
                  <th>decide</th>
                </tr>
              </thead>
              <tbody>
                ${approvals.map(
                  (a) =>
                    html`<tr data-approval-id="${a.id}" data-atomic="${a.amount.toString()}">
                      <td>${time(a.requestedAtMs)}</td>
                      <td>${time(a.deadlineMs)}</td>
                      <td class="num">${usdc(a.amount)}</td>
                      <td class="reason"><code>${a.method} ${a.host}${a.path}</code> (${a.route})</td>
                      <td>${a.client}</td>
                      <td class="reason">${a.reasons.join("; ")}</td>
                      <td>
                        <form class="decide" method="post" action="/approvals/${a.id}/approve">
                          <input
                            type="password"
                            name="token"
                            required
                            autocomplete="off"
                            placeholder="admin token"
                            aria-label="admin token"
                          />
                          <input
                            type="text"
                            name="reason"
                            placeholder="reason (optional)"
                            aria-label="reason"
                          />
                          <button type="submit" class="approve">Approve</button>
                          <button type="submit" class="deny" formaction="/approvals/${a.id}/deny">
                            Deny
                          </button>
                        </form>
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
    }
  </section>`;
}

function killSwitchSection(k: KillSwitchView | undefined): HtmlValue {
  if (k === undefined) return null;
  return html`<section
    id="killswitch"
    class="panel${k.on ? " alert" : ""}"
    data-on="${k.on ? "true" : "false"}"
  >
    <h2>Kill switch: ${k.on ? "ON — nothing is paid" : "off"}</h2>
    ${k.sinceMs !== undefined ? html`<p>Since ${time(k.sinceMs)}</p>` : null}
    ${k.reason ? html`<p>Reason: ${k.reason}</p>` : null}
  </section>`;
}

function breakersSection(breakers: BreakerView[] | undefined): HtmlValue {
  if (breakers === undefined) return null;
  const open = breakers.some((b) => b.state !== "closed");
  return html`<section id="breakers" class="panel${open ? " alert" : ""}">
    <h2>Circuit breakers</h2>
    ${
      breakers.length === 0
        ? html`<p class="muted">No circuit breakers configured.</p>`
        : html`<table>
            <thead>
              <tr>
                <th>breaker</th>
                <th>state</th>
                <th>since</th>
                <th>reason</th>
              </tr>
            </thead>
            <tbody>
              ${breakers.map(
                (b) =>
                  html`<tr data-breaker="${b.name}" data-state="${b.state}">
                    <td>${b.name}</td>
                    <td class="state ${b.state === "closed" ? "s-settled" : "s-indeterminate"}">
                      ${b.state.replace("_", "-")}
                    </td>
                    <td>${b.sinceMs !== undefined ? time(b.sinceMs) : ""}</td>
                    <td class="reason">${b.reason ?? ""}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
  </section>`;
}

function limitRow(budget: string, l: BudgetLimitView): SafeHtml {
  return html`<div
    class="limit${l.overLimit ? " over" : ""}"
    data-budget="${budget}"
    data-period="${l.period}"
    data-limit="${l.limit.toString()}"
    data-spent="${l.spent.toString()}"
    data-reserved="${l.reserved.toString()}"
    data-over="${l.overLimit ? "true" : "false"}"
  >
    <div><strong>${l.period}</strong></div>
    <div class="bar" role="img" aria-label="${percentText(l.usedBasisPoints)} of the ${l.period} limit used">
      <div class="spent" style="width:${pct(l.spentBasisPoints)}"></div>
      <div class="reserved" style="width:${pct(l.reservedBasisPoints)}"></div>
    </div>
    <div>
      ${usdc(l.spent)} spent + ${usdc(l.reserved)} reserved of ${usdc(l.limit)} (<span class="used-pct"
        >${percentText(l.usedBasisPoints)}</span
      >)${
        l.overLimit ? html` <span class="flag">over the limit</span>` : null
      }${l.resetsAtMs !== undefined ? html`<br /><span class="muted">resets ${time(l.resetsAtMs)}</span>` : null}
    </div>
  </div>`;
}

function budgetBlock(b: BudgetView): SafeHtml {
  return html`<div class="panel budget" data-budget="${b.name}">
    <h3>
      ${b.name}${b.perRequestMax !== undefined ? html` <span class="muted">(at most ${usdc(b.perRequestMax)} per request)</span>` : null}
    </h3>
    ${b.limits.length === 0 ? html`<p class="muted">No limits: only the per-request cap applies.</p>` : b.limits.map((l) => limitRow(b.name, l))}
  </div>`;
}

function budgetsSection(budgets: BudgetView[], unavailable: string | undefined): SafeHtml {
  return html`<section id="budgets">
    <h2>Budgets</h2>
    ${
      unavailable === undefined
        ? null
        : html`<div class="panel alert" id="budgets-unavailable">
            <p><strong>The budget store cannot be read:</strong> ${unavailable}</p>
            <p>Nothing is paid until it answers again; see <code>/readyz</code>.</p>
          </div>`
    }
    ${
      budgets.length === 0
        ? unavailable !== undefined
          ? null
          : html`<p class="panel">
              No budgets are configured, so nothing is paid. Add <code>budgets:</code> to the configuration.
            </p>`
        : html`<p class="legend muted">
              Bars: <span class="k-spent"></span>spent <span class="k-reserved"></span>reserved (payments
              still open), as parts of each limit.
            </p>
            ${budgets.map(budgetBlock)}`
    }
  </section>`;
}

function spendRows(kind: "route" | "client", window: string, rows: SpendRow[]): SafeHtml {
  return html`<table class="spend" data-window="${window}" data-by="${kind}">
    <thead>
      <tr>
        <th>${kind}</th>
        <th class="num">payments</th>
        <th class="num">spent</th>
        <th class="num">of which unknown</th>
      </tr>
    </thead>
    <tbody>
      ${
        rows.length === 0
          ? html`<tr>
              <td colspan="4" class="muted">nothing paid</td>
            </tr>`
          : rows.map(
              (r) =>
                html`<tr data-key="${r.key}" data-total="${r.total.toString()}" data-payments="${r.payments}">
                  <td>${r.key}</td>
                  <td class="num">${r.payments}</td>
                  <td class="num">${usdc(r.total)}</td>
                  <td class="num">${usdc(r.indeterminate)}</td>
                </tr>`,
            )
      }
    </tbody>
  </table>`;
}

function spendPanel(title: string, window: "today" | "month", t: SpendTable): SafeHtml {
  return html`<div class="panel" data-window="${window}" data-total="${t.total.toString()}">
    <h3>
      ${title} <span class="muted">(since ${time(t.sinceMs)})</span>: ${usdc(t.total)} in ${t.payments}
      payment${t.payments === 1 ? "" : "s"}
    </h3>
    ${spendRows("route", window, t.byRoute)} ${spendRows("client", window, t.byClient)}
  </div>`;
}

const STATE_NOTE: Record<PaymentStateName, string> = {
  settled: "paid",
  indeterminate: "outcome unknown: reconcile",
  reserved: "in flight (before signing)",
  sent: "in flight (payment sent)",
  rejected: "refused by the upstream; nothing charged",
  failed: "not sent; nothing charged",
  refused: "refused by the proxy; nothing signed",
};

function paymentRow(p: PaymentView): SafeHtml {
  return html`<tr
    class="${p.state}"
    data-payment-id="${p.id}"
    data-state="${p.state}"
    data-atomic="${p.amount.toString()}"
  >
    <td>${time(p.atMs)}</td>
    <td class="state s-${p.state}" title="${STATE_NOTE[p.state]}">${p.state}</td>
    <td class="num">${usdc(p.amount)}</td>
    <td>${p.route}</td>
    <td>${p.client}</td>
    <td class="tx mono" ${p.tx ? html` title="${p.tx}"` : null}>
      ${p.tx ?? html`<span class="muted">—</span>`}
    </td>
    <td class="reason">
      ${p.reason ?? ""}${p.state === "indeterminate" ? html` <a href="#indeterminate">what to do</a>` : null}
    </td>
  </tr>`;
}

function paymentsSection(p: RecentPayments): SafeHtml {
  return html`<section id="payments">
    <h2>Latest payments</h2>
    <p class="muted">
      Payments with an unknown outcome first, then the latest others; at most ${p.cap}
      rows${
        p.omitted > 0
          ? html` (${p.omitted} older not shown: <code>stoka-proxy ledger export</code> lists all)`
          : null
      }.
    </p>
    <table id="payment-rows">
      <thead>
        <tr>
          <th>started</th>
          <th>state</th>
          <th class="num">amount</th>
          <th>route</th>
          <th>client</th>
          <th>tx</th>
          <th>reason</th>
        </tr>
      </thead>
      <tbody>
        ${
          p.rows.length === 0
            ? html`<tr>
                <td colspan="7" class="muted">no payments yet</td>
              </tr>`
            : p.rows.map(paymentRow)
        }
      </tbody>
    </table>
  </section>`;
}

function caSection(ca: CaView | undefined): HtmlValue {
  if (ca === undefined) return null;
  return html`<section id="ca">
    <h2>Interception CA</h2>
    <div class="panel">
      <p>SHA-256 fingerprint: <code class="fingerprint">${ca.fingerprintSha256}</code></p>
      ${ca.subject ? html`<p>Subject: <code>${ca.subject}</code></p>` : null}
      ${ca.notAfterMs !== undefined ? html`<p>Valid until ${time(ca.notAfterMs)}</p>` : null}
      <p>
        Apps reaching paid hosts over HTTPS through the proxy must trust this CA. Run
        <code>stoka-proxy ca</code> on the proxy's machine: it prints the
        certificate${ca.certPath ? html` (<code>${ca.certPath}</code>)` : null} and how to trust it for curl,
        Python, Node, Go, Java and the system store. Compare the fingerprint above with
        <code>openssl x509 -noout -fingerprint -sha256 -in CERT</code>.
      </p>
    </div>
  </section>`;
}

export function renderStatusPage(view: StatusView): string {
  const page = html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="referrer" content="no-referrer" />
        <title>stoka-proxy status</title>
        <link rel="icon" href="data:," />
        <style>
          ${STYLE}
        </style>
      </head>
      <body>
        <header>
          <h1>stoka-proxy status</h1>
          <p class="muted">Generated ${time(view.generatedAtMs)}. Reload for fresh numbers.</p>
          ${factsList(view.facts)}
        </header>
        <main>
          ${approvalsSection(view.approvals)} ${indeterminateAlert(view.payments)}
          ${killSwitchSection(view.killSwitch)} ${breakersSection(view.breakers)}
          ${budgetsSection(view.budgets, view.budgetsUnavailable)}
          <section id="spend">
            <h2>Spend per route and client</h2>
            <p class="muted">
              Settled and unknown-outcome payments, by the UTC day and month they started in.
            </p>
            <div class="grid">
              ${spendPanel("Today", "today", view.today)}${spendPanel("This month", "month", view.month)}
            </div>
          </section>
          ${paymentsSection(view.payments)} ${caSection(view.ca)}
        </main>
        <footer>
          <p>
            Amounts in USDC; hover one for its atomic value (7 decimals). The same numbers:
            <code>stoka-proxy spend</code>, <code>/metrics</code>.
          </p>
        </footer>
      </body>
    </html> `;
  return page.text;
}
