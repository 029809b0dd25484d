import { describe, expect, it } from "vitest";
import { ApprovalRegistry } from "../../src/operator/approvals/registry.js";
import type { ApprovalDecision, ApprovalFacts } from "../../src/operator/approvals/registry.js";

/** The in-process registry: bounded, each wait ends once, by a person, its deadline or its app. */
const facts = (n: number): ApprovalFacts => ({
  paymentId: `p${n}`,
  requestId: `r${n}`,
  route: "store",
  client: "team",
  method: "POST",
  host: "test.api.stoka.space",
  path: "/v1/store",
  amount: 1_400n,
  budgets: ["team"],
  reasons: ["budget team: above"],
});
const never = () => () => undefined;

describe("ApprovalRegistry", () => {
  it("refuses past maxPending, and frees the slot once a wait ends", async () => {
    const counts: number[] = [];
    const r = new ApprovalRegistry({ maxPending: 2, observer: { pending: (n) => counts.push(n) } });
    const a = r.wait(facts(1), 60_000, never);
    const b = r.wait(facts(2), 60_000, never);
    expect(a && b).toBeTruthy();
    expect(r.wait(facts(3), 60_000, never)).toBeNull();
    expect(r.decide(a?.approval.id ?? "", false, "admin", "no")).toBeDefined();
    expect(await a?.decision).toEqual({ outcome: "denied", by: "admin", reason: "denied by admin: no" });
    expect(r.wait(facts(4), 60_000, never)).not.toBeNull();
    r.cancelAll("stopping");
    expect(await b?.decision).toEqual({ outcome: "cancelled", reason: "stopping" });
    expect(r.size).toBe(0);
    expect(counts.at(-1)).toBe(0);
  });

  it("ends once: the first of decision, deadline and departure wins", async () => {
    const decided: ApprovalDecision[] = [];
    const r = new ApprovalRegistry({ observer: { decided: (_p, d) => decided.push(d) } });
    let leave = (): void => undefined;
    let unsubscribed = 0;
    const w = r.wait(facts(1), 50, (left) => {
      leave = left;
      return () => (unsubscribed += 1);
    });
    leave();
    expect((await w?.decision)?.outcome).toBe("client_gone");
    expect(r.decide(w?.approval.id ?? "", true, "admin")).toBeUndefined();
    await new Promise((res) => setTimeout(res, 80));
    expect(decided.map((d) => d.outcome)).toEqual(["client_gone"]);
    expect(unsubscribed).toBe(1);

    const t = r.wait(facts(2), 30, never);
    const d = await t?.decision;
    expect(d?.outcome).toBe("timeout");
    expect(d?.reason).toBe("nobody approved the payment within 0.03 s");
    expect(r.list()).toEqual([]);
  });
});
