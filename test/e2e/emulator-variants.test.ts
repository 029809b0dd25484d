import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { parseChallenge } from "../../src/x402/challenge.js";
import type { PaymentPayload, PaymentRequirement } from "../../src/x402/payment-header.js";
import { decodeBase64Json, encodeBase64Json } from "../../src/x402/payment-header.js";
import { decodeReceipt, headerFor, offerOf, send } from "../support/stoka-client.js";
import { directClient, resetSwitches, startTestSandbox } from "../support/sandbox-fixture.js";

/** The documented variants (challenge forms, payment shapes) and every fault switch. */
let sb: Sandbox;
beforeAll(async () => {
  sb = await startTestSandbox();
});
afterAll(async () => {
  await sb.close();
});
beforeEach(() => resetSwitches(sb));

const BODY = Buffer.from("y".repeat(42));
const store = (key: string) => ({ headers: { "x-stoka-key": key }, body: BODY });

describe("challenge forms", () => {
  it("x402 v1 body: x402Version 1, maxAmountRequired only, X-PAYMENT", async () => {
    sb.emulator.switches.challengeForm = "x402v1";
    const c = directClient(sb);
    const { challenge, paid } = await c.paid("POST", "/v1/store", store("v1"));
    const body = challenge.json<{ x402Version: number; accepts: PaymentRequirement[] }>();
    expect(body.x402Version).toBe(1);
    expect(body.accepts[0]?.maxAmountRequired).toBe("1400");
    expect(body.accepts[0]?.amount).toBeUndefined();
    expect(paid.status).toBe(201);
    expect(paid.headers["x-payment-response"]).toBeDefined();
  });

  it("x402 v2: PAYMENT-REQUIRED header, PAYMENT-SIGNATURE expected, PAYMENT-RESPONSE returned", async () => {
    sb.emulator.switches.challengeForm = "x402v2";
    const c = directClient(sb);
    const { challenge, paid, payment } = await c.paid("POST", "/v1/store", store("v2"));
    const required = decodeBase64Json(String(challenge.headers["payment-required"])) as {
      accepts: PaymentRequirement[];
      resource: { url: string };
    };
    expect(required.accepts[0]?.amount).toBe("1400");
    expect(required.resource.url).toMatch(/\/v1\/store$/);
    expect(paid.status).toBe(201);
    expect(decodeReceipt(paid.headers["payment-response"]).success).toBe(true);
    // The same payment under X-PAYMENT is not looked at in v2 mode: a fresh 402, no charge.
    const wrongHeader = await send("POST", `${sb.emulator.httpUrl}/v1/store`, {
      headers: { "x-stoka-key": "v2b", "x-payment": payment },
      body: BODY,
    });
    expect(wrongHeader.status).toBe(402);
    expect(sb.emulator.chargedTotal(c.address)).toBe(1400n);
  });
});

describe("X-PAYMENT JSON shapes", () => {
  async function payWithShape(shape: "accepted" | "flat", strip: "accepted" | "flat") {
    sb.emulator.switches.paymentShape = shape;
    const c = directClient(sb);
    const first = await send("POST", `${sb.emulator.httpUrl}/v1/store`, store(`shape-${shape}-${strip}`));
    const full = decodeBase64Json(await c.paymentFor(offerOf(first))) as PaymentPayload;
    if (strip === "accepted") delete full.accepted;
    else {
      delete full.scheme;
      delete full.network;
    }
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, {
      headers: { "x-stoka-key": `shape-${shape}-${strip}`, "x-payment": encodeBase64Json(full) },
      body: BODY,
    });
    return { res, c };
  }

  it("the v2 `accepted` shape passes when required", async () => {
    const { res } = await payWithShape("accepted", "flat");
    expect(res.status).toBe(201);
  });
  it("the flat v1 shape passes when required", async () => {
    const { res } = await payWithShape("flat", "accepted");
    expect(res.status).toBe(201);
  });
  it("a missing `accepted` is 400 when the v2 shape is required, uncharged", async () => {
    const { res, c } = await payWithShape("accepted", "accepted");
    expect(res.status).toBe(400);
    expect(sb.emulator.chargedTotal(c.address)).toBe(0n);
  });
  it("missing scheme/network is 400 when the flat shape is required", async () => {
    const { res } = await payWithShape("flat", "flat");
    expect(res.status).toBe(400);
  });
});

describe("strict mode (default): `accepted` must be the requirement issued, as official servers check", () => {
  /** A store payment whose header JSON is edited after signing (the transaction stays valid). */
  async function payEdited(key: string, edit: (p: Record<string, unknown>) => void) {
    const c = directClient(sb);
    const first = await send("POST", `${sb.emulator.httpUrl}/v1/store`, store(key));
    const offer = offerOf(first);
    const payload = decodeBase64Json(await c.paymentFor(offer)) as Record<string, unknown>;
    edit(payload);
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, {
      headers: { "x-stoka-key": key, [headerFor(offer)]: encodeBase64Json(payload) },
      body: BODY,
    });
    return { res, c };
  }
  const accepted = (p: Record<string, unknown>) => p.accepted as Record<string, unknown>;

  it.each<[string, "stoka" | "x402v2", (p: Record<string, unknown>) => void]>([
    ["a field added (stoka)", "stoka", (p) => (accepted(p).note = "added")],
    ["a field dropped (stoka)", "stoka", (p) => delete accepted(p).mimeType],
    ["a number sent as a string (stoka)", "stoka", (p) => (accepted(p).maxTimeoutSeconds = "120")],
    ["`resource` copied in (v2)", "x402v2", (p) => (accepted(p).resource = "http://x/v1/store")],
    ["`accepted` left out (v2)", "x402v2", (p) => delete p.accepted],
  ])("%s: second 402 with the reason, nothing charged", async (_name, form, edit) => {
    sb.emulator.switches.challengeForm = form;
    const { res, c } = await payEdited(`strict-${form}`, edit);
    expect(res.status).toBe(402);
    const reason = parseChallenge(res.headers, res.body.toString());
    expect(reason.ok && reason.challenge.error).toMatch(/No matching payment requirements/);
    expect(sb.emulator.chargedTotal(c.address)).toBe(0n);
  });

  it("with strict mode off, the same edited `accepted` is not looked at", async () => {
    sb.emulator.switches.strictAccepted = false;
    const { res } = await payEdited("lenient", (p) => (accepted(p).note = "added"));
    expect(res.status).toBe(201);
  });

  it("unknown requirement fields (requirementExtras) are issued, and an echo of them passes", async () => {
    sb.emulator.switches.requirementExtras = { futureField: 7, nested: { ratio: 0.5 } };
    const c = directClient(sb);
    const { challenge, paid } = await c.paid("POST", "/v1/store", store("extras"));
    const body = challenge.json<{ accepts: Record<string, unknown>[] }>();
    expect(body.accepts[0]).toMatchObject({ futureField: 7, nested: { ratio: 0.5 } });
    expect(paid.status).toBe(201);
  });
});

describe("x402 v1 variant: only the v1 payment shape {x402Version: 1, scheme, network, payload}", () => {
  it.each<[string, (p: Record<string, unknown>) => void]>([
    ["x402Version 2", (p) => (p.x402Version = 2)],
    ["an `accepted` added", (p) => (p.accepted = { scheme: "exact" })],
    ["a `resource` added", (p) => (p.resource = "http://x")],
    ["`network` missing", (p) => delete p.network],
  ])("refuses %s with a reason, nothing charged", async (_name, edit) => {
    sb.emulator.switches.challengeForm = "x402v1";
    const c = directClient(sb);
    const first = await send("POST", `${sb.emulator.httpUrl}/v1/store`, store("v1-shape"));
    const payload = decodeBase64Json(await c.paymentFor(offerOf(first))) as Record<string, unknown>;
    expect(Object.keys(payload).sort()).toEqual(["network", "payload", "scheme", "x402Version"]);
    edit(payload);
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, {
      headers: { "x-stoka-key": "v1-shape", "x-payment": encodeBase64Json(payload) },
      body: BODY,
    });
    expect(res.status).toBe(402);
    expect(String(res.json().error)).toMatch(/x402 v1 payment is/);
    expect(sb.emulator.chargedTotal(c.address)).toBe(0n);
  });
});

describe("faults", () => {
  it("settle_fails: second 402 with a reason, nothing charged or stored", async () => {
    sb.emulator.addFault({ kind: "settle_fails" });
    const c = directClient(sb);
    const { paid } = await c.paid("POST", "/v1/store", store("sf"));
    expect(paid.status).toBe(402);
    expect(paid.json().error).toMatch(/settlement failed/);
    expect(sb.emulator.chargedTotal(c.address)).toBe(0n);
    expect(sb.emulator.state.getBlob(c.address, "sf")).toBeUndefined();
  });

  it("drop_after_settle: charged and stored, connection dropped", async () => {
    sb.emulator.addFault({ kind: "drop_after_settle" });
    const c = directClient(sb);
    await expect(c.paid("POST", "/v1/store", store("drop"))).rejects.toThrow();
    expect(sb.emulator.chargedTotal(c.address)).toBe(1400n);
    expect(sb.emulator.state.getBlob(c.address, "drop")).toBeDefined();
  });

  it("error_after_settle: charged, then 500", async () => {
    sb.emulator.addFault({ kind: "error_after_settle" });
    const c = directClient(sb);
    const { paid } = await c.paid("POST", "/v1/store", store("e500"));
    expect(paid.status).toBe(500);
    expect(sb.emulator.chargedTotal(c.address)).toBe(1400n);
  });

  it("slow: the answer after settling is delayed", async () => {
    sb.emulator.addFault({ kind: "slow", delayMs: 600 });
    const c = directClient(sb);
    const started = Date.now();
    const { paid } = await c.paid("POST", "/v1/store", store("slow"));
    expect(paid.status).toBe(201);
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
  });

  it("slow at the challenge stage delays the 402", async () => {
    sb.emulator.addFault({ kind: "slow", delayMs: 400, stage: "challenge" });
    const started = Date.now();
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, store("slow402"));
    expect(res.status).toBe(402);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
  });

  it("price_change: the retry meets a new price, second 402 quotes it, nothing charged", async () => {
    sb.emulator.addFault({ kind: "price_change", priceDelta: 250 });
    const c = directClient(sb);
    const { paid } = await c.paid("POST", "/v1/store", store("moved"));
    expect(paid.status).toBe(402);
    const again = parseChallenge(paid.headers, paid.body.toString());
    expect(again.ok && again.challenge.accepts[0]?.maxAmountRequired).toBe("1650");
    expect(sb.emulator.chargedTotal(c.address)).toBe(0n);
  });

  it("rate_limited: 429 with Retry-After", async () => {
    sb.emulator.addFault({ kind: "rate_limited", retryAfterSeconds: 7 });
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, store("rl"));
    expect(res.status).toBe(429);
    expect(res.headers["retry-after"]).toBe("7");
    expect((await send("POST", `${sb.emulator.httpUrl}/v1/store`, store("rl"))).status).toBe(402);
  });

  it("bad_challenge: a 402 no client can read", async () => {
    sb.emulator.addFault({ kind: "bad_challenge" });
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, store("bad"));
    expect(res.status).toBe(402);
    expect(parseChallenge(res.headers, res.body.toString()).ok).toBe(false);
  });

  it("faults apply `remaining` times, then the emulator is healthy again", async () => {
    sb.emulator.addFault({ kind: "error_after_settle", remaining: 2 });
    const c = directClient(sb);
    expect((await c.paid("POST", "/v1/store", store("r1"))).paid.status).toBe(500);
    expect((await c.paid("POST", "/v1/store", store("r2"))).paid.status).toBe(500);
    expect((await c.paid("POST", "/v1/store", store("r3"))).paid.status).toBe(201);
  });
});

describe("control API over HTTP (for other processes)", () => {
  it("switches, faults, funding and the record of charges", async () => {
    const base = `${sb.emulator.httpUrl}/_sandbox`;
    expect(
      (await send("PUT", `${base}/switches`, { body: JSON.stringify({ challengeForm: "x402v1" }) })).status,
    ).toBe(200);
    expect(sb.emulator.switches.challengeForm).toBe("x402v1");
    expect(
      (await send("POST", `${base}/faults`, { body: JSON.stringify({ kind: "nonsense" }) })).status,
    ).toBe(400);
    expect(
      (await send("POST", `${base}/faults`, { body: JSON.stringify({ kind: "settle_fails", remaining: 1 }) }))
        .status,
    ).toBe(200);
    expect(sb.emulator.switches.faults).toHaveLength(1);
    expect((await send("DELETE", `${base}/faults`)).status).toBe(200);
    expect(sb.emulator.switches.faults).toHaveLength(0);
    const fund = await send("POST", `${base}/fund`, {
      body: JSON.stringify({ address: "GTEST", amount: "5" }),
    });
    expect(fund.json().balance_atomic).toBe("5");
    const c = directClient(sb);
    await c.paid("POST", "/v1/store", store("ctl"));
    const state = (await send("GET", `${base}/state`)).json<{
      charges: { payer: string; amount: string; tx: string }[];
    }>();
    expect(state.charges.filter((ch) => ch.payer === c.address)).toEqual([
      expect.objectContaining({ amount: "1400", tx: expect.stringMatching(/^[0-9a-f]{64}$/) }),
    ]);
  });
});
