import { USDC_DECIMALS } from "./networks.js";

const ATOMIC = /^(0|[1-9][0-9]*)$/;
const DECIMAL_USDC = /^(0|[1-9][0-9]*)(?:\.([0-9]{1,7}))?\s*USDC$/i;

/**
 * Parses an amount written as atomic units (`"1400"`, `1400`) or as `"0.25 USDC"` into atomic
 * units (7 decimals, docs/wire-protocol.md, Hosts and networks). Never goes through a float.
 */
export function parseAmount(input: string | number | bigint): bigint {
  if (typeof input === "bigint") {
    if (input < 0n) throw new RangeError(`amount must not be negative: ${input}`);
    return input;
  }
  if (typeof input === "number") {
    if (input < 0) throw new RangeError(`amount must not be negative: ${input}`);
    if (!Number.isSafeInteger(input)) {
      // 0.05 in a config means 0.05 USDC far more often than anything else: say how to write it.
      const usdc = Number.isFinite(input) ? String(input) : "0.25";
      const exact = /^[0-9]+(\.[0-9]{1,7})?$/.test(usdc)
        ? ` (USDC has ${USDC_DECIMALS} decimals: that is ${parseAmount(`${usdc} USDC`)} atomic units)`
        : ` (USDC has ${USDC_DECIMALS} decimals)`;
      throw new RangeError(
        `amount ${input} is not a whole number of atomic units: write "${usdc} USDC"${exact}`,
      );
    }
    return BigInt(input);
  }
  const text = input.trim();
  if (ATOMIC.test(text)) return BigInt(text);
  const m = DECIMAL_USDC.exec(text);
  if (!m) {
    throw new RangeError(
      `cannot read amount ${JSON.stringify(input)}: write atomic units ("1400") or "0.25 USDC"`,
    );
  }
  const whole = BigInt(m[1] ?? "0");
  const frac = BigInt((m[2] ?? "").padEnd(USDC_DECIMALS, "0"));
  return whole * 10n ** BigInt(USDC_DECIMALS) + frac;
}

/** Formats atomic units as a decimal USDC string, e.g. 2500000n → "0.25 USDC". */
export function formatUsdc(atomic: bigint): string {
  const unit = 10n ** BigInt(USDC_DECIMALS);
  const sign = atomic < 0n ? "-" : "";
  const abs = atomic < 0n ? -atomic : atomic;
  const frac = (abs % unit).toString().padStart(USDC_DECIMALS, "0").replace(/0+$/, "");
  return `${sign}${abs / unit}${frac ? `.${frac}` : ""} USDC`;
}
