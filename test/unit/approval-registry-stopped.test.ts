import { describe, expect, it } from "vitest";
import { ApprovalRegistry } from "../../src/operator/approvals/registry.js";
import type { ApprovalFacts } from "../../src/operator/approvals/registry.js";

const facts: ApprovalFacts = {
  paymentId: "p1",
  requestId: "r1",
  route: "store",
  client: "team",
  method: "POST",
  host: "test.api.stoka.space",
  path: "/v1/store",
  amount: 1_400n,
  budgets: ["team"],
  reasons: ["budget team: above"],
};
const never = () => () => undefined;

describe("ApprovalRegistry after cancelAll (the proxy is stopping)", () => {
  it("takes no new wait, and says why", () => {
    const r = new ApprovalRegistry();
    expect(r.stopped).toBeUndefined();
    r.cancelAll("the proxy is shutting down");
    expect(r.stopped).toBe("the proxy is shutting down");
    expect(r.wait(facts, 60_000, never)).toBeNull();
    expect(r.size).toBe(0);
    // A second cancelAll (closeNow after shutdown) keeps the first reason.
    r.cancelAll("the proxy is stopping");
    expect(r.stopped).toBe("the proxy is shutting down");
  });
});
