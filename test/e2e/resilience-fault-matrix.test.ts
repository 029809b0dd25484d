import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProxyConfig } from "../../src/config/config.js";
import type { Fault } from "../../src/sandbox/switches.js";
import { startProxyWorld } from "../support/proxy-fixture.js";
import type { ProxyWorld } from "../support/proxy-fixture.js";
import {
  blackHole,
  budgetUsed,
  chargesSince,
  ledgerHead,
  newPayments,
  storeVia,
  switchableSigner,
} from "../support/resilience-world.js";
import type { SignerMode, SwitchableSigner } from "../support/resilience-world.js";
import { resetSwitches } from "../support/sandbox-fixture.js";

/**
 * The fault matrix: every emulator fault (and a hanging RPC or signer) × retries on/off × the
 * rate limiter on/off, through the real proxy. For each: what the app gets, how many payments
 * the emulator counted (never more than one per inbound request), the ledger's state and the
 * budget's balance.
 */
const PRICE = 1400n;

interface Case {
  name: string;
  fault?: Partial<Fault> & Pick<Fault, "kind">;
  signer?: SignerMode;
  /** [retries on, retries off] */
  status: [number, number];
  charged: [0 | 1, 0 | 1];
  /** The payment's final ledger state, or null when nothing was reserved. */
  ledger: [string | null, string | null];
}

const CASES: Case[] = [
  { name: "no fault", status: [201, 201], charged: [1, 1], ledger: ["settled", "settled"] },
  {
    name: "drop after settle",
    fault: { kind: "drop_after_settle" },
    status: [502, 502],
    charged: [1, 1],
    ledger: ["indeterminate", "indeterminate"],
  },
  {
    name: "5xx after settle",
    fault: { kind: "error_after_settle" },
    status: [502, 502],
    charged: [1, 1],
    ledger: ["indeterminate", "indeterminate"],
  },
  {
    name: "slow upstream after settle",
    fault: { kind: "slow", delayMs: 1500 },
    status: [504, 504],
    charged: [1, 1],
    ledger: ["indeterminate", "indeterminate"],
  },
  {
    name: "settle failure",
    fault: { kind: "settle_fails" },
    status: [402, 402],
    charged: [0, 0],
    ledger: ["rejected", "rejected"],
  },
  {
    name: "price change",
    fault: { kind: "price_change", priceDelta: 100 },
    status: [402, 402],
    charged: [0, 0],
    ledger: ["rejected", "rejected"],
  },
  {
    name: "429 on the unpaid request",
    fault: { kind: "rate_limited", stage: "challenge", retryAfterSeconds: 1 },
    status: [201, 429],
    charged: [1, 0],
    ledger: ["settled", null],
  },
  {
    name: "503 on the unpaid request",
    fault: { kind: "unavailable" },
    status: [201, 503],
    charged: [1, 0],
    ledger: ["settled", null],
  },
  {
    name: "429 on the paid request",
    fault: { kind: "rate_limited", stage: "paid", retryAfterSeconds: 1 },
    status: [201, 429],
    charged: [1, 0],
    ledger: ["settled", "rejected"],
  },
  {
    name: "5xx before settle (not charged, the proxy cannot know)",
    fault: { kind: "error_before_settle" },
    status: [502, 502],
    charged: [0, 0],
    ledger: ["indeterminate", "indeterminate"],
  },
  {
    name: "no receipt on the paid answer",
    fault: { kind: "omit_receipt" },
    status: [201, 201],
    charged: [1, 1],
    ledger: ["settled", "settled"],
  },
  {
    name: "unreadable 402",
    fault: { kind: "bad_challenge" },
    status: [402, 402],
    charged: [0, 0],
    ledger: [null, null],
  },
  {
    name: "503 twice on the unpaid request",
    fault: { kind: "unavailable", remaining: 2 },
    status: [201, 503],
    charged: [1, 0],
    ledger: ["settled", null],
  },
  {
    name: "slow 402 (past the upstream timeout)",
    fault: { kind: "slow", stage: "challenge", delayMs: 1500 },
    status: [504, 504],
    charged: [0, 0],
    ledger: [null, null],
  },
  {
    name: "RPC hanging",
    signer: "rpc_hang",
    status: [502, 502],
    charged: [0, 0],
    ledger: ["failed", "failed"],
  },
  {
    name: "signer hanging",
    signer: "signer_hang",
    status: [502, 502],
    charged: [0, 0],
    ledger: ["failed", "failed"],
  },
];

function configure(retries: boolean, limiter: boolean) {
  return (c: ProxyConfig) => {
    c.upstream.timeoutMs = 1000;
    c.resilience.retry = {
      maxAttempts: retries ? 3 : 1,
      baseDelayMs: 20,
      maxDelayMs: 100,
      maxTotalMs: 3000,
      retryAfterCapMs: 3000,
    };
    c.resilience.resend = {
      maxResends: retries ? 2 : 0,
      safetyMarginMs: 1000,
      retryAfterCapMs: 3000,
      baseDelayMs: 50,
      maxDelayMs: 200,
    };
    c.resilience.rateLimit = limiter
      ? {
          ratePerSecond: 50,
          burst: 50,
          maxWaitMs: 3000,
          jitterRatio: 0.1,
          retryAfterCapMs: 3000,
          adaptive: {
            floorPerSecond: 1,
            ceilingPerSecond: 50,
            decreaseFactor: 0.5,
            increasePerSecond: 10,
            increaseIntervalMs: 100,
            decreaseCooldownMs: 100,
          },
        }
      : null;
    // The matrix makes payment failures on purpose; the breaker has its own test.
    c.resilience.breaker = null;
  };
}

describe.each([
  [true, true],
  [true, false],
  [false, true],
  [false, false],
] as const)("retries %s, rate limiter %s", (retries, limiter) => {
  let w: ProxyWorld;
  let signer: SwitchableSigner;
  let hole: Awaited<ReturnType<typeof blackHole>>;
  beforeAll(async () => {
    hole = await blackHole();
    w = await startProxyWorld(configure(retries, limiter));
    signer = switchableSigner(w, w.config, hole.url, 700);
    w.proxy.ctx.signer = signer;
  });
  afterAll(async () => {
    await w.close();
    await hole.close();
  });

  it.each(CASES)("$name", async (c) => {
    resetSwitches(w.sandbox, 0);
    signer.mode = c.signer ?? "key";
    if (c.fault) w.sandbox.emulator.addFault({ remaining: 1, ...c.fault });
    const i = retries ? 0 : 1;
    const seq = ledgerHead(w);
    const charges = w.sandbox.emulator.state.charges.length;
    const usedBefore = await budgetUsed(w);

    const res = await storeVia(w, `${c.name}-${retries}-${limiter}`);

    expect(res.status, res.body).toBe(c.status[i]);
    // At most one payment per inbound request, counted where the money moves.
    expect(chargesSince(w, charges)).toBe(c.charged[i]);
    const payments = [...newPayments(w, seq).values()];
    const want = c.ledger[i];
    if (want === null) expect(payments).toEqual([]);
    else {
      expect(payments).toHaveLength(1);
      expect(payments[0]?.[0]?.state).toBe(want);
    }
    // Settled and indeterminate stay counted; rejected and failed are given back.
    const held = want === "settled" || want === "indeterminate" ? PRICE : 0n;
    expect((await budgetUsed(w)) - usedBefore).toBe(held);
    if (c.name === "429 on the paid request" && retries) {
      // The same header went out twice: two `sent` rows, the second saying it was a resend.
      const id = payments[0]?.[0]?.paymentId;
      const rows = [...w.proxy.stores.ledger.rows()].filter((r) => r.paymentId === id);
      const sent = rows.filter((r) => r.state === "sent");
      expect(sent).toHaveLength(2);
      expect(sent[0]?.tx).toBe(sent[1]?.tx);
      expect(sent[1]?.reason).toMatch(/resent the same payment header/);
    }
  });
});
