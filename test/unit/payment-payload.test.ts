import {
  Account,
  Address,
  Keypair,
  Operation,
  TransactionBuilder,
  nativeToScVal,
  xdr,
} from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import { NETWORKS } from "../../src/stellar/networks.js";
import { parseChallenge } from "../../src/x402/challenge.js";
import type { Challenge } from "../../src/x402/challenge.js";
import { commandInput } from "../../src/wallet/command-payment-signer.js";
import { jsonEqual } from "../../src/x402/json-equal.js";
import { checkPayment } from "../../src/x402/payment-check.js";
import { decodeBase64Json, encodeBase64Json } from "../../src/x402/payment-header.js";
import { buildPaymentPayload, offerFor } from "../../src/x402/payment-payload.js";
import type { PaymentOffer } from "../../src/x402/payment-payload.js";

/**
 * The payment JSON per challenge form, against what the x402 specs and stoka's clients send.
 * Echo, never rebuild: `accepted` is the server's requirement verbatim (unknown fields kept,
 * types kept, nothing added), and the v2 header form echoes `resource` and `extensions` too.
 */
const ASSET = NETWORKS["stellar:testnet"].usdcAsset;
const PAYEE = "GAPRO7H3JNM4LVR33IDR5PYNQ35TJJXWJW65HU267RIPJIUUGEPWCAXB";
const TX = "AAAA-the-transaction-envelope";

/** A v2 requirement as `@x402/express` sends it, plus fields the proxy has never heard of. */
const v2Requirement = {
  scheme: "exact",
  network: "stellar:testnet",
  amount: "1234",
  asset: ASSET,
  payTo: PAYEE,
  maxTimeoutSeconds: 120,
  extra: { areFeesSponsored: true, tier: 3, ratio: 0.5, tags: ["a", 1, null], nested: { deep: false } },
  futureField: 7,
};
const resource = { url: "https://x402.test/weather", description: "weather", mimeType: "application/json" };
const extensions = { bazaar: { info: { input: { type: "http" } }, schema: { type: "object" } } };

/** A stoka-form requirement (both price fields, resource fields inside the requirement). */
const stokaRequirement = {
  scheme: "exact",
  network: "stellar:testnet",
  maxAmountRequired: "1400",
  amount: "1400",
  resource: "http://test.api.stoka.space/v1/store",
  description: "store 42 bytes for 30 days",
  mimeType: "application/json",
  payTo: PAYEE,
  maxTimeoutSeconds: 120,
  asset: ASSET,
  extra: { areFeesSponsored: true },
  outputSchema: null,
};

/** An x402 v1 requirement: `maxAmountRequired` only. */
const v1Requirement = {
  scheme: "exact",
  network: "stellar:testnet",
  maxAmountRequired: "1100",
  resource: "http://test.api.stoka.space/v1/retrieve/k",
  description: "retrieve 42 bytes",
  mimeType: "application/octet-stream",
  payTo: PAYEE,
  maxTimeoutSeconds: 120,
  asset: ASSET,
  extra: { areFeesSponsored: true },
};

function challengeOf(headers: Record<string, string>, body: unknown): Challenge {
  const r = parseChallenge(headers, typeof body === "string" ? body : JSON.stringify(body));
  if (!r.ok) throw new Error(r.reason);
  return r.challenge;
}

const v2Challenge = () =>
  challengeOf(
    {
      "payment-required": encodeBase64Json({
        x402Version: 2,
        error: "Payment required",
        resource,
        accepts: [v2Requirement],
        extensions,
      }),
    },
    "{}",
  );
const stokaChallenge = () =>
  challengeOf({}, { x402Version: 2, error: "payment required", accepts: [stokaRequirement] });
const v1Challenge = () => challengeOf({}, { x402Version: 1, accepts: [v1Requirement] });

function offerOf(c: Challenge, i = 0): PaymentOffer {
  const req = c.accepts[i];
  if (!req) throw new Error("no requirement");
  return offerFor(c, req);
}

describe("buildPaymentPayload: the payment JSON per challenge form", () => {
  it.each<[string, () => Challenge, Record<string, unknown>]>([
    [
      "x402 v2 header form: {x402Version: 2, resource, accepted, payload, extensions}",
      v2Challenge,
      { x402Version: 2, resource, accepted: v2Requirement, payload: { transaction: TX }, extensions },
    ],
    [
      "stoka form: {x402Version: 2, scheme, network, accepted, payload}",
      stokaChallenge,
      {
        x402Version: 2,
        scheme: "exact",
        network: "stellar:testnet",
        accepted: stokaRequirement,
        payload: { transaction: TX },
      },
    ],
    [
      "x402 v1 form: {x402Version: 1, scheme, network, payload}",
      v1Challenge,
      { x402Version: 1, scheme: "exact", network: "stellar:testnet", payload: { transaction: TX } },
    ],
  ])("%s", (_name, challenge, expected) => {
    const built = buildPaymentPayload(offerOf(challenge()), TX);
    expect(built).toStrictEqual(expected);
    // And byte-level JSON equality of what travels: encode → decode gives the same value.
    expect(decodeBase64Json(encodeBase64Json(built))).toStrictEqual(expected);
  });

  it("keeps unknown fields and their types: numbers stay numbers, null stays null", () => {
    const accepted = buildPaymentPayload(offerOf(v2Challenge()), TX).accepted as Record<string, unknown>;
    expect(accepted.futureField).toBe(7);
    expect(accepted.maxTimeoutSeconds).toBe(120);
    expect(accepted.extra).toStrictEqual(v2Requirement.extra);
    const stoka = buildPaymentPayload(offerOf(stokaChallenge()), TX).accepted as Record<string, unknown>;
    expect(stoka.outputSchema).toBeNull();
  });

  it("adds nothing: a v1 requirement gets no `amount`, a v2 one no `resource`", () => {
    const v2 = buildPaymentPayload(offerOf(v2Challenge()), TX);
    expect(Object.keys(v2.accepted as object).sort()).toEqual(Object.keys(v2Requirement).sort());
    const payload = buildPaymentPayload(offerOf(v1Challenge()), TX);
    expect(payload).not.toHaveProperty("accepted");
    expect(JSON.stringify(payload)).not.toContain('"amount"');
  });

  it("echoes the requirement that was chosen, not the first one", () => {
    const other = { ...v2Requirement, payTo: "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5" };
    const c = challengeOf(
      { "payment-required": encodeBase64Json({ x402Version: 2, resource, accepts: [other, v2Requirement] }) },
      "",
    );
    expect(buildPaymentPayload(offerOf(c, 1), TX).accepted).toStrictEqual(v2Requirement);
  });

  it("a v2 header without `extensions` gets none back; one without `resource`, none either", () => {
    const c = challengeOf(
      { "payment-required": encodeBase64Json({ x402Version: 2, accepts: [v2Requirement] }) },
      "",
    );
    expect(buildPaymentPayload(offerOf(c), TX)).toStrictEqual({
      x402Version: 2,
      accepted: v2Requirement,
      payload: { transaction: TX },
    });
  });

  it("the typed view the terms read is derived, never written back", () => {
    const offer = offerOf(v1Challenge());
    expect(offer.requirement.maxAmountRequired).toBe("1100");
    expect(offer.requirement.amount).toBeUndefined();
    expect(offer.requirement.raw).toStrictEqual(v1Requirement);
  });
});

describe("commandInput: what X_PAYMENT_CMD reads on stdin", () => {
  it.each<[string, () => Challenge, Record<string, unknown>]>([
    ["v2 header form", v2Challenge, { x402Version: 2, resource, accepts: [v2Requirement], extensions }],
    ["stoka form", stokaChallenge, { x402Version: 2, accepts: [stokaRequirement] }],
    ["v1 form (no amount added)", v1Challenge, { x402Version: 1, accepts: [v1Requirement] }],
  ])("%s: the 402 narrowed to the chosen requirement, verbatim", (_name, challenge, expected) => {
    expect(commandInput(offerOf(challenge()))).toStrictEqual(expected);
  });
});

/** How the envelope's authorization entry relates to its transfer call. */
type AuthShape = "matching" | "none" | "two" | "another call" | "another address" | "with a sub-invocation";

/**
 * An unsigned one-operation `transfer(from, to, amount)` envelope on testnet, with one address
 * authorization entry for exactly that call (unsigned: the proxy checks its shape, the network
 * checks the signature), or the `auth` shape asked for.
 */
function transferEnvelope(
  to: string,
  amount: bigint,
  auth: AuthShape = "matching",
): { xdr: string; hash: string } {
  const from = Keypair.random().publicKey();
  const args = (payee: string, value: bigint) => [
    nativeToScVal(from, { type: "address" }),
    nativeToScVal(payee, { type: "address" }),
    nativeToScVal(value, { type: "i128" }),
  ];
  const invocation = (callArgs: xdr.ScVal[], sub: xdr.SorobanAuthorizedInvocation[] = []) =>
    new xdr.SorobanAuthorizedInvocation({
      function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(
        new xdr.InvokeContractArgs({
          contractAddress: new Address(ASSET).toScAddress(),
          functionName: "transfer",
          args: callArgs,
        }),
      ),
      subInvocations: sub,
    });
  const entry = (signer: string, root: xdr.SorobanAuthorizedInvocation) =>
    new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
        new xdr.SorobanAddressCredentials({
          address: new Address(signer).toScAddress(),
          nonce: xdr.Int64.fromString("1"),
          signatureExpirationLedger: 100,
          signature: xdr.ScVal.scvVoid(),
        }),
      ),
      rootInvocation: root,
    });
  const exact = entry(from, invocation(args(to, amount)));
  const entries: Record<AuthShape, xdr.SorobanAuthorizationEntry[]> = {
    matching: [exact],
    none: [],
    two: [exact, exact],
    "another call": [entry(from, invocation(args(Keypair.random().publicKey(), amount * 1000n)))],
    "another address": [entry(Keypair.random().publicKey(), invocation(args(to, amount)))],
    "with a sub-invocation": [entry(from, invocation(args(to, amount), [invocation(args(to, amount))]))],
  };
  const source = new Account(Keypair.random().publicKey(), "1");
  const tx = new TransactionBuilder(source, {
    fee: "100",
    networkPassphrase: NETWORKS["stellar:testnet"].passphrase,
  })
    .addOperation(
      Operation.invokeContractFunction({
        contract: ASSET,
        function: "transfer",
        args: args(to, amount),
        auth: entries[auth],
      }),
    )
    .setTimeout(0)
    .build();
  return { xdr: tx.toXDR(), hash: tx.hash().toString("hex") };
}

describe("checkPayment: a signer's header is checked before it leaves", () => {
  const passphrase = NETWORKS["stellar:testnet"].passphrase;
  const good = transferEnvelope(PAYEE, 1234n);
  const offer = () => offerOf(v2Challenge());
  const header = (patch: Record<string, unknown> = {}, tx = good.xdr) =>
    encodeBase64Json({ ...buildPaymentPayload(offer(), tx), ...patch });

  it("the proxy's own header passes and yields the transaction hash (decoded once)", () => {
    expect(checkPayment(header(), offer(), passphrase)).toEqual({
      ok: true,
      txHash: good.hash,
      expirationLedger: expect.any(Number),
    });
  });

  it.each<[string, () => string, RegExp]>([
    ["not base64", () => "%%%", /base64/],
    ["not an object", () => encodeBase64Json([1]), /JSON object/],
    ["another x402Version", () => header({ x402Version: 1 }), /x402Version/],
    [
      "`accepted` with a field added",
      () => header({ accepted: { ...v2Requirement, resource: resource.url } }),
      /accepted/,
    ],
    [
      "`accepted` with a number turned into a string",
      () => header({ accepted: { ...v2Requirement, maxTimeoutSeconds: "120" } }),
      /accepted/,
    ],
    [
      "`accepted` with an unknown field dropped",
      () => header({ accepted: { ...v2Requirement, futureField: undefined } }),
      /accepted/,
    ],
    ["a v2 payment without `accepted`", () => header({ accepted: undefined }), /accepted/],
    ["no transaction", () => header({ payload: {} }), /transaction/],
    [
      "pays another payee",
      () => header({}, transferEnvelope(Keypair.random().publicKey(), 1234n).xdr),
      /payee/,
    ],
    ["pays another amount", () => header({}, transferEnvelope(PAYEE, 1235n).xdr), /price/],
    ...(["none", "two"] as const).map((auth): [string, () => string, RegExp] => [
      `authorization entries: ${auth}`,
      () => header({}, transferEnvelope(PAYEE, 1234n, auth).xdr),
      /not exactly one/,
    ]),
    [
      "an authorization for another transfer (payee, amount)",
      () => header({}, transferEnvelope(PAYEE, 1234n, "another call").xdr),
      /another call/,
    ],
    [
      "an authorization with a sub-invocation",
      () => header({}, transferEnvelope(PAYEE, 1234n, "with a sub-invocation").xdr),
      /another call/,
    ],
    [
      "an authorization for another address than the payer",
      () => header({}, transferEnvelope(PAYEE, 1234n, "another address").xdr),
      /not the payer/,
    ],
  ])("refuses %s", (_name, make, reason) => {
    const r = checkPayment(make(), offer(), passphrase);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it("a stoka-form payment may omit `accepted` (stoka's own clients do)", () => {
    const stoka = offerOf(
      challengeOf(
        {},
        { x402Version: 2, accepts: [{ ...stokaRequirement, amount: "1234", maxAmountRequired: "1234" }] },
      ),
    );
    const flat = encodeBase64Json({
      x402Version: 2,
      scheme: "exact",
      network: "stellar:testnet",
      payload: { transaction: good.xdr },
    });
    expect(checkPayment(flat, stoka, passphrase)).toEqual({
      ok: true,
      txHash: good.hash,
      expirationLedger: expect.any(Number),
    });
  });
});

describe("jsonEqual: the comparison official servers make", () => {
  it.each<[string, unknown, unknown, boolean]>([
    ["key order ignored", { a: 1, b: 2 }, { b: 2, a: 1 }, true],
    ["nested", { x: { y: [1, { z: null }] } }, { x: { y: [1, { z: null }] } }, true],
    ["number vs string", { a: 1 }, { a: "1" }, false],
    ["missing key vs null", { a: null }, {}, false],
    ["extra key", { a: 1 }, { a: 1, b: 2 }, false],
    ["array order matters", [1, 2], [2, 1], false],
    ["array vs object", [], {}, false],
    ["true vs 1", true, 1, false],
  ])("%s", (_name, a, b, equal) => {
    expect(jsonEqual(a, b)).toBe(equal);
    expect(jsonEqual(b, a)).toBe(equal);
  });
});
