import { Address, Keypair, hash, nativeToScVal, xdr } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import { preimageMismatch } from "../../src/wallet/key-transaction.js";
import { NETWORKS } from "../../src/stellar/networks.js";
import { invocationFor } from "../../src/stellar/transfer-transaction.js";

/** The wallet signs a Soroban authorization only for the transfer agreed, on its own network. */
const TESTNET = NETWORKS["stellar:testnet"];
const from = Keypair.random().publicKey();
const payee = Keypair.random().publicKey();

const transfer = (to: string, amount: bigint) =>
  invocationFor(
    new xdr.InvokeContractArgs({
      contractAddress: new Address(TESTNET.usdcAsset).toScAddress(),
      functionName: "transfer",
      args: [
        nativeToScVal(from, { type: "address" }),
        nativeToScVal(to, { type: "address" }),
        nativeToScVal(amount, { type: "i128" }),
      ],
    }),
  );

const preimage = (invocation: xdr.SorobanAuthorizedInvocation, passphrase = TESTNET.passphrase) =>
  xdr.HashIdPreimage.envelopeTypeSorobanAuthorization(
    new xdr.HashIdPreimageSorobanAuthorization({
      networkId: hash(Buffer.from(passphrase, "utf8")),
      nonce: xdr.Int64.fromString("7"),
      signatureExpirationLedger: 100,
      invocation,
    }),
  ).toXDR("base64");

describe("what the wallet is asked to sign", () => {
  const expected = transfer(payee, 1400n);

  it("the agreed transfer is signed", () => {
    expect(preimageMismatch(preimage(transfer(payee, 1400n)), expected, TESTNET.passphrase)).toBeNull();
  });

  it.each<[string, string, RegExp]>([
    ["more", preimage(transfer(payee, 1_400_000n)), /another call/],
    ["another payee", preimage(transfer(Keypair.random().publicKey(), 1400n)), /another call/],
    [
      "another network",
      preimage(transfer(payee, 1400n), NETWORKS["stellar:pubnet"].passphrase),
      /another network/,
    ],
    ["not a preimage", Buffer.from("hello").toString("base64"), /not an authorization preimage/],
  ])("%s is refused", (_name, asked, reason) => {
    expect(preimageMismatch(asked, expected, TESTNET.passphrase)).toMatch(reason);
  });
});
