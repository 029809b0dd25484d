import { describe, expect, it } from "vitest";
import type { PaidHostEntry } from "../../src/config/config.js";
import { DEFAULT_WALLET_AUTH } from "../../src/config/load.js";
import type { RefusalCode } from "../../src/payment/decide.js";
import {
  PAY_EXIT,
  PAY_REQUEST_PREFIX,
  choosePaymentToFinish,
  payTarget,
  readPayInput,
  refusalExit,
} from "../../src/payment/pay-request.js";
import type { OpenCandidate, PayFlags } from "../../src/payment/pay-request.js";

/** `stoka-proxy pay`'s pure half: the stdin shapes, the paid host and route, which payment to finish. */
const REQ = {
  scheme: "exact",
  network: "stellar:testnet",
  asset: "CUSDC",
  amount: "1400",
  payTo: "GPAYEE",
  maxTimeoutSeconds: 60,
  extra: { areFeesSponsored: true },
};

describe("readPayInput: the shapes stoka's clients send", () => {
  it.each([
    ["one requirement alone", REQ, "stoka", 2, []],
    ["{accepts}", { accepts: [REQ] }, "stoka", 2, []],
    ["{x402Version: 2, accepts}", { x402Version: 2, accepts: [REQ] }, "stoka", 2, []],
    [
      "{x402Version: 1, accepts}",
      { x402Version: 1, accepts: [{ ...REQ, maxAmountRequired: "1400" }] },
      "x402v1",
      1,
      [],
    ],
    [
      "{x402Version: 2, resource, accepts} (the v2 header form)",
      { x402Version: 2, resource: { url: "https://api.stoka.space/v1/store" }, accepts: [REQ] },
      "x402v2",
      2,
      ["https://api.stoka.space/v1/store"],
    ],
    [
      "a v1-style requirement's resource",
      { accepts: [{ ...REQ, resource: "/v1/store" }] },
      "stoka",
      2,
      ["/v1/store"],
    ],
    [
      "two requirements, one resource",
      {
        accepts: [
          { ...REQ, resource: "/v1/store" },
          { ...REQ, payTo: "GOTHER", resource: "/v1/store" },
        ],
      },
      "stoka",
      2,
      ["/v1/store"],
    ],
  ])("%s", (_name, input, form, version, resources) => {
    const r = readPayInput(JSON.stringify(input));
    if (!r.ok) throw new Error(r.reason);
    expect(r.challenge.form).toBe(form);
    expect(r.challenge.x402Version).toBe(version);
    expect(r.resources).toEqual(resources);
    // Verbatim: the requirement is echoed as it came.
    expect(r.challenge.accepts[0]?.raw).toMatchObject(REQ);
  });

  it.each([
    ["not JSON", "pay me"],
    ["an array", "[1]"],
    ["no usable requirement", JSON.stringify({ accepts: [{ scheme: "exact" }] })],
    ["an unknown version", JSON.stringify({ x402Version: 3, accepts: [REQ] })],
    ["too deep", `${"[".repeat(100)}${"]".repeat(100)}`],
    ["past the size bound", JSON.stringify({ accepts: [REQ], pad: "x".repeat(300 * 1024) })],
  ])("refuses %s", (_name, text) => {
    expect(readPayInput(text).ok).toBe(false);
  });
});

const GATEWAY = new URL("http://127.0.0.1:9000");
const PAID: PaidHostEntry[] = [
  { host: "test.api.stoka.space", upstream: new URL("http://127.0.0.1:9000"), payTo: [] },
  { host: "stoka.internal", port: 8443, payTo: ["GPAYEE"] },
];
const FACTS = {
  gateway: GATEWAY,
  paidHosts: PAID,
  walletAuthRoutes: DEFAULT_WALLET_AUTH.flatMap((r) => (r.route ? [r.route] : [])),
};

describe("payTarget: which paid host and budget route", () => {
  it.each<[string, string[], PayFlags, { host: string; url: string; method: string; route: string }]>([
    [
      "a path alone is on the gateway",
      ["/v1/store"],
      {},
      { host: "127.0.0.1", url: "http://127.0.0.1:9000/v1/store", method: "POST", route: "store" },
    ],
    [
      "a paid host's URL goes to its upstream",
      ["http://test.api.stoka.space/v1/retrieve/k"],
      {},
      {
        host: "test.api.stoka.space",
        url: "http://127.0.0.1:9000/v1/retrieve/k",
        method: "GET",
        route: "retrieve",
      },
    ],
    [
      "a name:port entry, no upstream: where it was reached",
      ["https://stoka.internal:8443/v1/store"],
      {},
      { host: "stoka.internal", url: "https://stoka.internal:8443/v1/store", method: "POST", route: "store" },
    ],
    [
      "PUT / DELETE share a path: the wallet-signed one is never paid, so update",
      ["/v1/object/k"],
      {},
      { host: "127.0.0.1", url: "http://127.0.0.1:9000/v1/object/k", method: "PUT", route: "update" },
    ],
    [
      "--url wins over the resource",
      ["https://elsewhere.example/v1/store"],
      { url: "http://test.api.stoka.space/v1/store" },
      { host: "test.api.stoka.space", url: "http://127.0.0.1:9000/v1/store", method: "POST", route: "store" },
    ],
    [
      "--url settles two resources",
      ["/v1/store", "/v1/other"],
      { url: "/v1/store" },
      { host: "127.0.0.1", url: "http://127.0.0.1:9000/v1/store", method: "POST", route: "store" },
    ],
    [
      "--route alone: the gateway, with the route's method",
      [],
      { route: "queue_push" },
      { host: "127.0.0.1", url: "http://127.0.0.1:9000/", method: "POST", route: "queue_push" },
    ],
    [
      "--method names the route of a shared path",
      ["/v1/object/k"],
      { method: "delete" },
      { host: "127.0.0.1", url: "http://127.0.0.1:9000/v1/object/k", method: "DELETE", route: "delete" },
    ],
    [
      "a path no route knows, with --method: other",
      ["/v2/new-thing"],
      { method: "POST" },
      { host: "127.0.0.1", url: "http://127.0.0.1:9000/v2/new-thing", method: "POST", route: "other" },
    ],
  ])("%s", (_name, resources, flags, want) => {
    const t = payTarget(resources, flags, FACTS);
    if (!t.ok) throw new Error(t.reason);
    expect({ host: t.host.host, url: t.url.toString(), method: t.method, route: t.route }).toEqual(want);
  });

  it.each<[string, string[], PayFlags, "terms_rejected" | "bad_request", RegExp]>([
    [
      "a host that is not paid",
      ["https://evil.example/v1/store"],
      {},
      "terms_rejected",
      /neither a paid host/,
    ],
    [
      "a paid name on another port",
      ["https://stoka.internal:9443/v1/store"],
      {},
      "terms_rejected",
      /neither/,
    ],
    ["`//host` in a path names a host", ["//evil.example/v1/store"], {}, "terms_rejected", /evil\.example/],
    [
      "--url to a host that is not paid",
      ["/v1/store"],
      { url: "https://evil.example/v1/store" },
      "terms_rejected",
      /evil/,
    ],
    ["not HTTP", ["ftp://test.api.stoka.space/x"], {}, "terms_rejected", /not HTTP/],
    ["no resource and no flag", [], {}, "bad_request", /--url/],
    ["two resources", ["/v1/store", "/v1/retrieve/k"], {}, "bad_request", /2 different resources/],
    ["--route contradicting the path", ["/v1/store"], { route: "retrieve" }, "bad_request", /contradicts/],
    [
      "--method contradicting --route",
      ["/v1/store"],
      { method: "POST", route: "update" },
      "bad_request",
      /contradicts/,
    ],
    ["a path no route knows", ["/v2/new-thing"], {}, "bad_request", /--route NAME or --method/],
    ["a method that is not one", ["/v1/store"], { method: "PO ST" }, "bad_request", /not an HTTP method/],
  ])("refuses %s", (_name, resources, flags, code, reason) => {
    const t = payTarget(resources, flags, FACTS);
    expect(t.ok).toBe(false);
    if (t.ok) return;
    expect(t.code).toBe(code);
    expect(t.reason).toMatch(reason);
  });
});

describe("refusalExit: a caller tells terms from budgets", () => {
  it.each<[RefusalCode | "bad_request", number]>([
    ["challenge_unreadable", PAY_EXIT.refusedTerms],
    ["payee_unknown", PAY_EXIT.refusedTerms],
    ["terms_rejected", PAY_EXIT.refusedTerms],
    ["no_budget", PAY_EXIT.refusedBudget],
    ["price_above_cap", PAY_EXIT.refusedBudget],
    ["budget_exceeded", PAY_EXIT.refusedBudget],
    ["budget_unavailable", PAY_EXIT.refusedBudget],
    ["payments_stopped", PAY_EXIT.withheld],
    ["dry_run", PAY_EXIT.withheld],
    ["approval_denied", PAY_EXIT.withheld],
    ["approval_timeout", PAY_EXIT.withheld],
    ["no_signer", PAY_EXIT.config],
    ["bad_request", PAY_EXIT.usage],
  ])("%s → %i", (code, exit) => {
    expect(refusalExit(code)).toBe(exit);
  });

  it("every refusal exit differs from success, usage's 2 and the others' 1", () => {
    for (const c of ["terms_rejected", "budget_exceeded", "dry_run"] as const)
      expect([0, 1, 2]).not.toContain(refusalExit(c));
  });
});

const p = (id: string, state: string, client = "pay-command", ours = true): OpenCandidate => ({
  paymentId: id,
  requestId: ours ? `${PAY_REQUEST_PREFIX}${id}` : `req-${id}`,
  client,
  state,
});

describe("choosePaymentToFinish", () => {
  it.each<[string, OpenCandidate[], { paymentId?: string; client: string }, string | RegExp]>([
    ["the one open payment", [p("a", "settled"), p("b", "sent")], { client: "pay-command" }, "b"],
    ["an indeterminate one is open too", [p("a", "indeterminate")], { client: "pay-command" }, "a"],
    ["by id", [p("a", "sent"), p("b", "sent")], { paymentId: "a", client: "pay-command" }, "a"],
    ["by id, whatever the client", [p("a", "sent", "other")], { paymentId: "a", client: "pay-command" }, "a"],
    ["only the client's own", [p("a", "sent", "x"), p("b", "sent", "y")], { client: "y" }, "b"],
    [
      "two open: ambiguous",
      [p("a", "sent"), p("b", "sent")],
      { client: "pay-command" },
      /2 open.*--payment-id/,
    ],
    ["none open", [p("a", "settled"), p("b", "reserved")], { client: "pay-command" }, /no open/],
    [
      "the proxy's own payment is not ours",
      [p("a", "sent", "pay-command", false)],
      { paymentId: "a", client: "pay-command" },
      /made by the proxy/,
    ],
    [
      "a proxy payment is never picked without an id",
      [p("a", "sent", "pay-command", false)],
      { client: "pay-command" },
      /no open/,
    ],
    ["a final payment", [p("a", "failed")], { paymentId: "a", client: "pay-command" }, /is failed, not open/],
    ["an unknown id", [], { paymentId: "zz", client: "pay-command" }, /no payment zz/],
  ])("%s", (_name, latest, want, expected) => {
    const r = choosePaymentToFinish(latest, want);
    if (typeof expected === "string") {
      expect(r.ok && r.payment.paymentId).toBe(expected);
    } else {
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(expected);
    }
  });
});
