import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Keypair } from "@stellar/stellar-sdk";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { formatStellarAuthorization, signChallengeMessage } from "../../src/stellar/wallet-auth.js";
import { send } from "../support/stoka-client.js";
import { directClient, resetSwitches, startTestSandbox } from "../support/sandbox-fixture.js";

/** Challenge rules of wallet-signed routes: single use, expiring, audience-bound, key-bound. */
let sb: Sandbox;
let clockMs = Date.now();
beforeAll(async () => {
  sb = await startTestSandbox({ now: () => clockMs });
});
afterAll(async () => {
  await sb.close();
});
beforeEach(() => {
  resetSwitches(sb);
  clockMs = Date.now();
});

async function challenge(audience: string): Promise<{ challenge_id: string; message: string }> {
  const res = await send("POST", `${sb.emulator.httpUrl}/v1/auth/challenge`, {
    body: JSON.stringify({ audience }),
  });
  expect(res.status).toBe(200);
  return res.json();
}

function authFor(kp: Keypair, c: { challenge_id: string; message: string }, claim: Keypair = kp): string {
  return formatStellarAuthorization({
    publicKey: claim.publicKey(),
    challengeId: c.challenge_id,
    signatureHex: signChallengeMessage(kp, c.message),
  });
}

const usage = (authorization?: string) =>
  send("GET", `${sb.emulator.httpUrl}/v1/me/usage`, { headers: authorization ? { authorization } : {} });

describe("challenges", () => {
  it("a valid signature passes once; reuse is 401", async () => {
    const kp = Keypair.random();
    const auth = authFor(kp, await challenge("usage"));
    expect((await usage(auth)).status).toBe(200);
    const again = await usage(auth);
    expect(again.status).toBe(401);
    expect(again.json().error).toMatch(/already used/);
  });

  it("an expired challenge is 401", async () => {
    const kp = Keypair.random();
    const auth = authFor(kp, await challenge("usage"));
    clockMs += 121_000;
    const res = await usage(auth);
    expect(res.status).toBe(401);
    expect(res.json().error).toMatch(/expired/);
  });

  it("a challenge for another audience is 401", async () => {
    const kp = Keypair.random();
    const res = await usage(authFor(kp, await challenge("delete")));
    expect(res.status).toBe(401);
    expect(res.json().error).toMatch(/audience/);
  });

  it("a bad signature is 401", async () => {
    const kp = Keypair.random();
    const c = await challenge("usage");
    const res = await usage(authFor(kp, { ...c, message: `${c.message}!` }));
    expect(res.status).toBe(401);
    expect(res.json().error).toMatch(/does not verify/);
  });

  it("a signature by another key than the claimed one is 401", async () => {
    const res = await usage(authFor(Keypair.random(), await challenge("usage"), Keypair.random()));
    expect(res.status).toBe(401);
  });

  it.each([
    ["missing", undefined],
    ["malformed", "Stellar nope"],
    ["unknown challenge", authFor(Keypair.random(), { challenge_id: "no-such-id", message: "m" })],
  ])("%s Authorization is 401 with {error}", async (_name, auth) => {
    const res = await usage(auth);
    expect(res.status).toBe(401);
    expect(res.json()).toMatchObject({ service: "stoka", error: expect.any(String) });
  });

  it("both audience spellings are accepted by default; an unknown audience is 400", async () => {
    const c = directClient(sb);
    expect((await c.signed("GET", "/v1/me/usage", "me-usage")).status).toBe(200);
    expect((await c.signed("DELETE", "/v1/object/x", "object-delete")).status).toBe(204);
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/auth/challenge`, {
      body: JSON.stringify({ audience: "everything" }),
    });
    expect(res.status).toBe(400);
    expect(res.json().error).toMatch(/unknown audience/);
  });

  it("the audiences switch can make one spelling unknown", async () => {
    sb.emulator.switches.audiences = "long";
    const res = await send("POST", `${sb.emulator.httpUrl}/v1/auth/challenge`, {
      body: JSON.stringify({ audience: "delete" }),
    });
    expect(res.status).toBe(400);
    expect((await directClient(sb).signed("DELETE", "/v1/object/x", "object-delete")).status).toBe(204);
  });

  it("delete acts only on the signer's own blob", async () => {
    const owner = directClient(sb);
    await owner.paid("POST", "/v1/store", { headers: { "x-stoka-key": "keep" }, body: "data" });
    const other = directClient(sb);
    expect((await other.signed("DELETE", "/v1/object/keep", "delete")).status).toBe(204);
    expect(sb.emulator.state.getBlob(owner.address, "keep")).toBeDefined();
  });
});
