import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Webhook signatures, in the common `t=…,v1=…` convention (as Stripe and others sign theirs):
 *
 *   X-Stoka-Proxy-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * The timestamp is signed with the body, so a captured delivery cannot be replayed later than
 * the receiver's tolerance (default 5 minutes). Every attempt (retries included) is signed
 * afresh with its own timestamp; the body, and its `id`, stay the same. A receiver verifies the
 * raw bytes it received (before any JSON parsing), with `verifySignature`. Several `v1=`
 * entries may appear (and several secrets may be tried), so a secret can be rotated without
 * downtime. Pure.
 */
export const SIGNATURE_HEADER = "x-stoka-proxy-signature";
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function signPayload(secret: string, timestampSeconds: number, body: string | Uint8Array): string {
  const mac = createHmac("sha256", secret);
  mac.update(`${timestampSeconds}.`);
  mac.update(body);
  return mac.digest("hex");
}

export function signatureHeader(secret: string, timestampSeconds: number, body: string | Uint8Array): string {
  return `t=${timestampSeconds},v1=${signPayload(secret, timestampSeconds, body)}`;
}

export type VerifyResult =
  | { ok: true; timestampSeconds: number }
  | { ok: false; reason: "missing" | "malformed" | "stale" | "mismatch" };

export interface VerifyInput {
  header: string | string[] | undefined;
  /** The raw body, exactly as received. */
  body: string | Uint8Array;
  /** One secret, or the current and previous ones during a rotation. */
  secrets: string | readonly string[];
  nowMs: number;
  toleranceSeconds?: number;
}

const HEX64 = /^[0-9a-f]{64}$/;

export function verifySignature(input: VerifyInput): VerifyResult {
  const raw = Array.isArray(input.header) ? input.header.join(",") : input.header;
  if (raw === undefined || raw.trim() === "") return { ok: false, reason: "missing" };
  let timestamp: number | null = null;
  const candidates: string[] = [];
  for (const part of raw.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t") {
      if (!/^[0-9]{1,12}$/.test(value) || timestamp !== null) return { ok: false, reason: "malformed" };
      timestamp = Number(value);
    } else if (key === "v1") {
      if (HEX64.test(value)) candidates.push(value);
    }
    // other schemes (v0, future versions) are ignored, as the convention says
  }
  if (timestamp === null || candidates.length === 0) return { ok: false, reason: "malformed" };
  const tolerance = input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(input.nowMs / 1000 - timestamp) > tolerance) return { ok: false, reason: "stale" };
  const secrets = typeof input.secrets === "string" ? [input.secrets] : input.secrets;
  for (const secret of secrets) {
    const expected = Buffer.from(signPayload(secret, timestamp, input.body), "hex");
    for (const c of candidates) {
      if (timingSafeEqual(expected, Buffer.from(c, "hex"))) return { ok: true, timestampSeconds: timestamp };
    }
  }
  return { ok: false, reason: "mismatch" };
}
