import {
  Account,
  Address,
  Keypair,
  Networks,
  Operation,
  TransactionBuilder,
  hash,
  nativeToScVal,
} from "@stellar/stellar-sdk";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  networkId,
  scAddressOf,
  scValAddress,
  unsignedTransactionHash,
} from "../../src/stellar/xdr-cache.js";

/**
 * The payment path's shortcuts (src/stellar/xdr-cache.ts) against what the SDK computes the
 * long way: transaction hashes from the envelope bytes, cached addresses and network ids.
 */
const CONTRACT = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC";

function transferEnvelope(seed: number, passphrase: string, signed: boolean) {
  const payer = Keypair.random();
  const payee = Keypair.random().publicKey();
  const account = new Account(payer.publicKey(), String(seed));
  const tx = new TransactionBuilder(account, {
    fee: String(100 + (seed % 1000)),
    networkPassphrase: passphrase,
  })
    .addOperation(
      Operation.invokeContractFunction({
        contract: CONTRACT,
        function: "transfer",
        args: [
          nativeToScVal(payer.publicKey(), { type: "address" }),
          nativeToScVal(payee, { type: "address" }),
          nativeToScVal(BigInt(seed) * 1000n + 1n, { type: "i128" }),
        ],
      }),
    )
    .setTimeout(60 + (seed % 300))
    .build();
  if (signed) tx.sign(payer);
  return tx;
}

describe("xdr-cache", () => {
  it("an unsigned transaction's hash from its bytes is the SDK's tx.hash()", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.constantFrom(Networks.TESTNET, Networks.PUBLIC),
        (seed, net) => {
          const tx = transferEnvelope(seed, net, false);
          const bytes = tx.toEnvelope().toXDR();
          expect(unsignedTransactionHash(bytes, tx.signatures.length, net)).toBe(tx.hash().toString("hex"));
        },
      ),
      { numRuns: 40 },
    );
  });

  it("gives no shortcut for a signed envelope, or bytes that are not a v1 envelope", () => {
    const tx = transferEnvelope(7, Networks.TESTNET, true);
    expect(
      unsignedTransactionHash(tx.toEnvelope().toXDR(), tx.signatures.length, Networks.TESTNET),
    ).toBeNull();
    const unsigned = transferEnvelope(8, Networks.TESTNET, false).toEnvelope().toXDR();
    const v0 = Buffer.from(unsigned);
    v0.writeUInt32BE(0, 0);
    expect(unsignedTransactionHash(v0, 0, Networks.TESTNET)).toBeNull();
    expect(unsignedTransactionHash(Buffer.alloc(4), 0, Networks.TESTNET)).toBeNull();
  });

  it("network ids and addresses are the SDK's, and callers cannot change the cached ones", () => {
    const id = networkId(Networks.TESTNET);
    expect(id.equals(hash(Buffer.from(Networks.TESTNET, "utf8")))).toBe(true);
    id.fill(0);
    expect(networkId(Networks.TESTNET).equals(Buffer.alloc(32))).toBe(false);
    for (const s of [Keypair.random().publicKey(), CONTRACT]) {
      expect(scAddressOf(s).toXDR("hex")).toBe(Address.fromString(s).toScAddress().toXDR("hex"));
      expect(scValAddress(s).toXDR("hex")).toBe(nativeToScVal(s, { type: "address" }).toXDR("hex"));
      expect(scAddressOf(s)).toBe(scAddressOf(s));
    }
    expect(() => scAddressOf("GNOTANADDRESS")).toThrow();
  });
});
