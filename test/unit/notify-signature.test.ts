import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_TOLERANCE_SECONDS,
  signPayload,
  signatureHeader,
  verifySignature,
} from "../../src/operator/notify/signature.js";

/** `X-Stoka-Proxy-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. */

const SECRET = "whsec-test-0123456789abcdef";
const BODY = '{"id":"evt_1","event":"payment.indeterminate","data":{"amount":{"atomic":"1400"}}}';
const T = 1_773_576_000; // 2026-03-15T12:00:00Z
const NOW = T * 1000;

describe("signing", () => {
  it("is HMAC-SHA256 over `<t>.<body>`, as openssl computes it", () => {
    const openssl = execFileSync("openssl", ["dgst", "-sha256", "-hmac", SECRET, "-r"], {
      input: `${T}.${BODY}`,
    })
      .toString()
      .split(" ")[0];
    expect(signPayload(SECRET, T, BODY)).toBe(openssl);
    expect(signatureHeader(SECRET, T, BODY)).toBe(`t=${T},v1=${openssl}`);
  });

  it("signs bytes and the same text alike", () => {
    expect(signPayload(SECRET, T, Buffer.from(BODY))).toBe(signPayload(SECRET, T, BODY));
  });
});

describe("verifying", () => {
  const good = signatureHeader(SECRET, T, BODY);
  const v = (
    header: string | string[] | undefined,
    over: Partial<Parameters<typeof verifySignature>[0]> = {},
  ) => verifySignature({ header, body: BODY, secrets: SECRET, nowMs: NOW, ...over });

  it.each<[string, string | string[] | undefined, Partial<Parameters<typeof verifySignature>[0]>, string]>([
    ["the header as sent", good, {}, "ok"],
    [
      "extra spaces and an unknown scheme",
      ` t=${T} , v0=abc , v1=${signPayload(SECRET, T, BODY)} `,
      {},
      "ok",
    ],
    ["the body as bytes", good, { body: Buffer.from(BODY) }, "ok"],
    ["a header split in two", [`t=${T}`, `v1=${signPayload(SECRET, T, BODY)}`], {}, "ok"],
    ["a rotated secret: the old one still listed", good, { secrets: ["new-secret-000000000", SECRET] }, "ok"],
    [
      "two signatures, one per secret",
      `t=${T},v1=${signPayload("other-secret-00000000", T, BODY)},v1=${signPayload(SECRET, T, BODY)}`,
      {},
      "ok",
    ],
    ["at the edge of the tolerance", good, { nowMs: NOW + DEFAULT_TOLERANCE_SECONDS * 1000 }, "ok"],
    ["a changed body", good, { body: BODY.replace("1400", "1401") }, "mismatch"],
    ["another secret", good, { secrets: "not-the-secret-000000" }, "mismatch"],
    ["a signature for another timestamp", `t=${T + 1},v1=${signPayload(SECRET, T, BODY)}`, {}, "mismatch"],
    ["too old (a replay)", good, { nowMs: NOW + (DEFAULT_TOLERANCE_SECONDS + 1) * 1000 }, "stale"],
    ["too far ahead", good, { nowMs: NOW - (DEFAULT_TOLERANCE_SECONDS + 1) * 1000 }, "stale"],
    ["a tighter tolerance", good, { nowMs: NOW + 11_000, toleranceSeconds: 10 }, "stale"],
    ["no header", undefined, {}, "missing"],
    ["an empty header", "  ", {}, "missing"],
    ["no timestamp", `v1=${signPayload(SECRET, T, BODY)}`, {}, "malformed"],
    ["no v1", `t=${T}`, {}, "malformed"],
    ["a timestamp that is not a number", `t=12x,v1=${signPayload(SECRET, T, BODY)}`, {}, "malformed"],
    ["two timestamps", `t=${T},t=${T},v1=${signPayload(SECRET, T, BODY)}`, {}, "malformed"],
    ["a short v1", `t=${T},v1=abcd`, {}, "malformed"],
  ])("%s", (_name, header, over, expected) => {
    const r = v(header, over);
    expect(r.ok ? "ok" : r.reason).toBe(expected);
    if (r.ok) expect(r.timestampSeconds).toBe(T);
  });
});
