import { Keypair } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import {
  formatStellarAuthorization,
  parseStellarAuthorization,
  signChallengeMessage,
  verifyChallengeSignature,
} from "../../src/stellar/wallet-auth.js";

describe("Authorization: Stellar <G>:<id>:<hex>", () => {
  const kp = Keypair.random();
  const sig = signChallengeMessage(kp, "stoka-auth:delete:abc");

  it("signs the UTF-8 message with Ed25519, lowercase hex, 64 bytes", () => {
    expect(sig).toMatch(/^[0-9a-f]{128}$/);
    expect(verifyChallengeSignature(kp.publicKey(), "stoka-auth:delete:abc", sig)).toBe(true);
    expect(verifyChallengeSignature(kp.publicKey(), "stoka-auth:delete:abd", sig)).toBe(false);
    expect(verifyChallengeSignature(Keypair.random().publicKey(), "stoka-auth:delete:abc", sig)).toBe(false);
  });

  it("round-trips through the header", () => {
    const header = formatStellarAuthorization({
      publicKey: kp.publicKey(),
      challengeId: "c-1",
      signatureHex: sig,
    });
    expect(parseStellarAuthorization(header)).toEqual({
      publicKey: kp.publicKey(),
      challengeId: "c-1",
      signatureHex: sig,
    });
  });

  it.each([
    ["missing", undefined],
    ["wrong scheme", `Bearer ${"x"}`],
    ["two parts", `Stellar ${kp.publicKey()}:${sig}`],
    ["short signature", `Stellar ${kp.publicKey()}:id:abcd`],
    ["bad key checksum", `Stellar G${"A".repeat(55)}:id:${sig}`],
  ])("refuses %s", (_name, header) => {
    expect(parseStellarAuthorization(header)).toBeNull();
  });
});
