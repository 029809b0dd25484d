/**
 * The emulator's switches: which documented variant it speaks, and which faults it injects.
 * Tests flip them in-process; users and other processes use `PUT /_sandbox/switches` and
 * `POST /_sandbox/faults` on the emulator.
 */
export type ChallengeForm = "stoka" | "x402v1" | "x402v2";

/** Which X-PAYMENT JSON shape the emulator insists on (stoka's two pages differ). */
export type PaymentShape = "either" | "accepted" | "flat";

/** Which challenge-audience spellings the emulator accepts. */
export type AudienceSpelling = "both" | "short" | "long";

/**
 * How `GET /v1/me/usage` answers: `days` (`{days: [{date, spent_atomic}]}`, the documented
 * one), `series` (`{days: 7, series: [{day, charged_atomic}]}`, as the live API was seen),
 * `map` (`{usage: {"2026-11-28": "1400"}}`), `pairs` (`[[date, amount], …]`), `nested`
 * (`{usage: {daily: [{date, amount}]}}`), `payments` (days and the charges with their tx), or
 * `garbage` (`{total: "…"}`, which no reader can take as days).
 */
export type UsageShape = "days" | "series" | "map" | "pairs" | "nested" | "payments" | "garbage";

export type FaultKind =
  | "settle_fails" // second 402 with a reason, nothing charged
  | "drop_after_settle" // charge, then drop the connection
  | "error_after_settle" // charge, then answer 500
  | "error_before_settle" // verify, then answer 500 without charging
  | "slow" // wait `delayMs` before answering
  | "price_change" // the price moves by `priceDelta` between the 402 and the paid retry
  | "rate_limited" // 429 with Retry-After (`stage`: challenge = only unpaid requests, paid = only paid ones)
  | "unavailable" // 503 (with Retry-After when `retryAfterSeconds` is set) to an unpaid request
  | "bad_challenge" // the 402 has a malformed body/header
  | "omit_receipt" // settle, answer 2xx without X-PAYMENT-RESPONSE
  | "stale_challenge"; // the next auth challenge is issued already expired

export interface Fault {
  kind: FaultKind;
  /** How many requests it applies to; null = until cleared. */
  remaining: number | null;
  delayMs?: number;
  /** For `slow`: delay the 402 challenge, or the answer after settling (default). For `rate_limited`: which requests. */
  stage?: "challenge" | "after_settle" | "paid";
  priceDelta?: number;
  retryAfterSeconds?: number;
  /**
   * For `rate_limited` and `unavailable`: only requests of this route (`challenge`, `delete`,
   * `usage`, `store`, …), paid or not, wallet-signed or public. Without it, only paid routes.
   */
  route?: string;
}

export interface EmulatorSwitches {
  challengeForm: ChallengeForm;
  paymentShape: PaymentShape;
  /**
   * Strict mode (default on), as official x402 servers behave: a payment's `accepted`, when
   * present, must equal the requirement issued for the request (second 402 "No matching payment
   * requirements" otherwise), and an x402 v2 header-form payment must carry one.
   */
  strictAccepted: boolean;
  /** Extra fields put into every issued requirement, e.g. unknown ones a client must echo. */
  requirementExtras: Record<string, unknown>;
  audiences: AudienceSpelling;
  /** Long-poll window of queue pop, seconds (stoka: up to 20). */
  popWaitSeconds: number;
  usageShape: UsageShape;
  faults: Fault[];
}

export function defaultSwitches(): EmulatorSwitches {
  return {
    challengeForm: "stoka",
    paymentShape: "either",
    strictAccepted: true,
    requirementExtras: {},
    audiences: "both",
    popWaitSeconds: 20,
    usageShape: "days",
    faults: [],
  };
}

/** Takes one use of the first active fault of `kind`, if any. */
export function takeFault(
  switches: EmulatorSwitches,
  kind: FaultKind,
  applies: (f: Fault) => boolean = () => true,
): Fault | undefined {
  const fault = switches.faults.find(
    (f) => f.kind === kind && (f.remaining === null || f.remaining > 0) && applies(f),
  );
  if (!fault) return undefined;
  if (fault.remaining !== null) {
    fault.remaining -= 1;
    if (fault.remaining === 0) switches.faults = switches.faults.filter((f) => f !== fault);
  }
  return fault;
}

const FAULT_KINDS: readonly FaultKind[] = [
  "settle_fails",
  "drop_after_settle",
  "error_after_settle",
  "error_before_settle",
  "slow",
  "price_change",
  "rate_limited",
  "unavailable",
  "bad_challenge",
  "omit_receipt",
  "stale_challenge",
];

export function isFaultKind(value: unknown): value is FaultKind {
  return typeof value === "string" && (FAULT_KINDS as readonly string[]).includes(value);
}
