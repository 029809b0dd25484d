import { describe, expect, it } from "vitest";
import { parseChallenge } from "../../src/x402/challenge.js";
import { encodeBase64Json } from "../../src/x402/payment-header.js";

const base = {
  scheme: "exact",
  network: "stellar:testnet",
  asset: "CBIELTK6YBZJU5UP2WWQEUCYKLPU6AUNZ2BQ4WWFEIE3USCIHMXQDAMA",
  payTo: "GAPRO7H3JNM4LVR33IDR5PYNQ35TJJXWJW65HU267RIPJIUUGEPWCAXB",
  maxTimeoutSeconds: 120,
  extra: { areFeesSponsored: true },
};

describe("parseChallenge: the three documented 402 forms", () => {
  it.each([
    [
      "stoka body",
      {},
      { x402Version: 2, accepts: [{ ...base, maxAmountRequired: "1400" }] },
      "stoka",
      "x-payment",
      "1400",
    ],
    [
      "x402 v1 body",
      {},
      { x402Version: 1, accepts: [{ ...base, maxAmountRequired: "1100" }] },
      "x402v1",
      "x-payment",
      "1100",
    ],
    [
      "x402 v2 header",
      {
        "payment-required": encodeBase64Json({
          x402Version: 2,
          resource: { url: "http://h/r" },
          accepts: [{ ...base, amount: "2000" }],
        }),
      },
      "not json at all",
      "x402v2",
      "payment-signature",
      "2000",
    ],
    [
      "amount wins over maxAmountRequired",
      {},
      { x402Version: 2, accepts: [{ ...base, maxAmountRequired: "9999", amount: "1400" }] },
      "stoka",
      "x-payment",
      "1400",
    ],
  ])("%s", (_name, headers, body, form, header, price) => {
    const r = parseChallenge(headers, typeof body === "string" ? body : JSON.stringify(body));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.challenge.form).toBe(form);
    expect(r.challenge.paymentHeader).toBe(header);
    const req = r.challenge.accepts[0];
    expect(req?.amount ?? req?.maxAmountRequired).toBe(price);
  });

  it("keeps the server's error reason", () => {
    const r = parseChallenge(
      {},
      JSON.stringify({ x402Version: 2, error: "expired", accepts: [{ ...base, amount: "1" }] }),
    );
    expect(r.ok && r.challenge.error).toBe("expired");
  });

  it("skips broken entries but keeps good ones", () => {
    const r = parseChallenge(
      {},
      JSON.stringify({ x402Version: 2, accepts: [{ scheme: "exact" }, { ...base, amount: "5" }] }),
    );
    expect(r.ok && r.challenge.accepts.length).toBe(1);
  });

  it.each([
    ["no JSON and no header", {}, "<html>pay</html>"],
    ["accepts not an array", {}, JSON.stringify({ x402Version: 2, accepts: "pay me" })],
    ["unknown x402Version", {}, JSON.stringify({ x402Version: 3, accepts: [{ ...base, amount: "1" }] })],
    ["non-numeric price", {}, JSON.stringify({ x402Version: 2, accepts: [{ ...base, amount: "1.5" }] })],
    ["negative price", {}, JSON.stringify({ x402Version: 2, accepts: [{ ...base, amount: "-1" }] })],
    ["no price", {}, JSON.stringify({ x402Version: 2, accepts: [{ ...base }] })],
    ["v2 header not base64", { "payment-required": "%%" }, "{}"],
    ["v2 header base64url", { "payment-required": "eyJ4NDAyVmVyc2lvbiI6Mn0_" }, "{}"],
    [
      "a malformed amount, even beside a good maxAmountRequired (never priced from the other field)",
      {},
      JSON.stringify({ x402Version: 2, accepts: [{ ...base, amount: 1400, maxAmountRequired: "1400" }] }),
    ],
    [
      "a v2 header naming another x402Version",
      { "payment-required": encodeBase64Json({ x402Version: 1, accepts: [{ ...base, amount: "1" }] }) },
      "{}",
    ],
  ])("refuses %s", (_name, headers, body) => {
    expect(parseChallenge(headers, body).ok).toBe(false);
  });
});

describe("parseChallenge keeps what the payment must echo, verbatim", () => {
  it("each requirement's own object rides along as `raw`; the typed view is derived", () => {
    const req = { ...base, amount: "7", futureField: [1, "two"], extra: { areFeesSponsored: true, n: 1.5 } };
    const r = parseChallenge({}, JSON.stringify({ x402Version: 2, accepts: [req] }));
    expect(r.ok && r.challenge.accepts[0]?.raw).toStrictEqual(req);
    expect(r.ok && r.challenge.x402Version).toBe(2);
  });

  it("the v2 header's resource and extensions are kept; the body forms have neither", () => {
    const resource = { url: "http://h/r", description: "d", mimeType: "m", extraInfo: 1 };
    const extensions = { bazaar: { info: {} } };
    const v2 = parseChallenge(
      {
        "payment-required": encodeBase64Json({
          x402Version: 2,
          resource,
          accepts: [{ ...base, amount: "1" }],
          extensions,
        }),
      },
      "",
    );
    expect(v2.ok && v2.challenge.resource).toStrictEqual(resource);
    expect(v2.ok && v2.challenge.extensions).toStrictEqual(extensions);
    const v1 = parseChallenge(
      {},
      JSON.stringify({ x402Version: 1, accepts: [{ ...base, maxAmountRequired: "1" }] }),
    );
    expect(v1.ok && v1.challenge.x402Version).toBe(1);
    expect(v1.ok && "resource" in v1.challenge).toBe(false);
  });
});
