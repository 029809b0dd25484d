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

describe("ApprovalRegistry per client", () => {
  const of = (client: string, n: number): ApprovalFacts => ({
    ...facts,
    client,
    paymentId: `p-${client}-${n}`,
  });

  it("one client cannot take every slot: past its share it is refused, others still wait", () => {
    const r = new ApprovalRegistry({ maxPending: 4, maxPerClient: 2 });
    expect(r.wait(of("greedy", 1), 60_000, never)).not.toBeNull();
    expect(r.wait(of("greedy", 2), 60_000, never)).not.toBeNull();
    expect(r.full("greedy")).toMatch(
      /client greedy already has 2 payments waiting for approval \(at most 2\)/,
    );
    expect(r.wait(of("greedy", 3), 60_000, never)).toBeNull();
    expect(r.full("other")).toBeUndefined();
    expect(r.wait(of("other", 1), 60_000, never)).not.toBeNull();
    expect(r.wait(of("third", 1), 60_000, never)).not.toBeNull();
    // The total cap still holds.
    expect(r.full("fourth")).toMatch(/too many payments already wait for approval \(4\)/);
    expect(r.wait(of("fourth", 1), 60_000, never)).toBeNull();
    r.cancelAll("done");
  });

  it("without maxPerClient, the total cap is the only one (as before)", () => {
    const r = new ApprovalRegistry({ maxPending: 3 });
    for (let i = 0; i < 3; i++) expect(r.wait(of("team", i), 60_000, never)).not.toBeNull();
    expect(r.wait(of("team", 3), 60_000, never)).toBeNull();
    r.cancelAll("done");
  });
});
