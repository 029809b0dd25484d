import { describe, expect, it } from "vitest";
import {
  Account,
  Address,
  BASE_FEE,
  Keypair,
  Operation,
  SorobanDataBuilder,
  TransactionBuilder,
  nativeToScVal,
  xdr,
} from "@stellar/stellar-sdk";
import { NETWORKS } from "../../src/stellar/networks.js";
import { checkAuthEntry } from "../../src/stellar/soroban-auth.js";
import { decodeTransfer, invocationFor } from "../../src/stellar/transfer-transaction.js";
import {
  PrepareCache,
  buildWarmTransaction,
  ed25519SigningKey,
  estimatedLedger,
  templateFrom,
  templateKey,
} from "../../src/wallet/prepare-cache.js";

const passphrase = NETWORKS["stellar:testnet"].passphrase;
const payer = Keypair.random();
const payTo = Keypair.random().publicKey();
const asset = Address.contract(Buffer.alloc(32, 7)).toString();

const transfer = (amount: bigint) =>
  new xdr.InvokeContractArgs({
    contractAddress: Address.fromString(asset).toScAddress(),
    functionName: "transfer",
    args: [
      nativeToScVal(payer.publicKey(), { type: "address" }),
      nativeToScVal(payTo, { type: "address" }),
      nativeToScVal(amount, { type: "i128" }),
    ],
  });

const nonceKey = (nonce: string) =>
  xdr.LedgerKey.contractData(
    new xdr.LedgerKeyContractData({
      contract: Address.fromString(payer.publicKey()).toScAddress(),
      key: xdr.ScVal.scvLedgerKeyNonce(new xdr.ScNonceKey({ nonce: xdr.Int64.fromString(nonce) })),
      durability: xdr.ContractDataDurability.temporary(),
    }),
  );
const balanceKey = (who: string) =>
  xdr.LedgerKey.contractData(
    new xdr.LedgerKeyContractData({
      contract: Address.fromString(asset).toScAddress(),
      key: xdr.ScVal.scvVec([xdr.ScVal.scvSymbol("Balance"), Address.fromString(who).toScVal()]),
      durability: xdr.ContractDataDurability.persistent(),
    }),
  );

/** A cold payment's shape, as a real RPC would simulate it: the payer's nonce key in the footprint. */
function coldEnvelope(builtAtMs: number): string {
  const data = new SorobanDataBuilder()
    .setReadWrite([balanceKey(payer.publicKey()), balanceKey(payTo), nonceKey("42")])
    .setResources(1_000_000, 1_000, 500)
    .setResourceFee(40_000n)
    .build();
  return new TransactionBuilder(new Account(Keypair.random().publicKey(), "0"), {
    fee: BASE_FEE,
    networkPassphrase: passphrase,
  })
    .addOperation(
      Operation.invokeContractFunction({
        contract: asset,
        function: "transfer",
        args: transfer(1400n).args(),
      }),
    )
    .setSorobanData(data)
    .setTimebounds(0, Math.floor(builtAtMs / 1000) + 300)
    .build()
    .toEnvelope()
    .toXDR("base64");
}

describe("prepared payments", () => {
  it("a warm transaction: the agreed transfer, a fresh signed nonce also in the footprint, fresh time bounds", async () => {
    const t0 = 1_800_000_000_000;
    const template = templateFrom(coldEnvelope(t0), 5_000, t0);
    if (!template) throw new Error("no template");
    expect(template.validForSeconds).toBe(300);
    const nowMs = t0 + 30_000;
    const current = estimatedLedger(template, nowMs, 5);
    expect(current).toBe(5_006);
    const call = transfer(1500n);
    const out = buildWarmTransaction({
      template,
      payer,
      signingKey: ed25519SigningKey(payer),
      invocation: invocationFor(call),
      call,
      expirationLedger: current + 12,
      networkPassphrase: passphrase,
      nowMs,
    });
    if (!out) throw new Error("no warm transaction");
    const decoded = decodeTransfer(out, passphrase);
    expect(decoded.amount).toBe(1500n);
    expect(decoded.to).toBe(payTo);
    expect(decoded.auth).toHaveLength(1);
    const auth = checkAuthEntry(decoded.auth[0] as xdr.SorobanAuthorizationEntry, {
      networkPassphrase: passphrase,
      signer: payer.publicKey(),
      invocation: invocationFor(decoded.call),
      currentLedger: current,
      maxExpirationLedger: current + 20,
    });
    expect(auth.ok).toBe(true);
    if (!auth.ok) return;
    expect(auth.expirationLedger).toBe(current + 12);
    expect(auth.nonce).not.toBe("42");
    const tx = xdr.TransactionEnvelope.fromXDR(out, "base64").v1().tx();
    const rw = tx.ext().sorobanData().resources().footprint().readWrite();
    const nonces = rw
      .filter((k) => k.switch() === xdr.LedgerEntryType.contractData())
      .map((k) => k.contractData().key())
      .filter((k) => k.switch() === xdr.ScValType.scvLedgerKeyNonce())
      .map((k) => k.nonceKey().nonce().toString());
    expect(nonces).toEqual([auth.nonce]);
    expect(rw).toHaveLength(3);
    expect(tx.ext().sorobanData().resourceFee().toString()).toBe("40000");
    expect(Number(tx.cond().timeBounds().maxTime().toString())).toBe(Math.floor(nowMs / 1000) + 300);
  });

  it("two warm payments never share a nonce", async () => {
    const t0 = Date.now();
    const template = templateFrom(coldEnvelope(t0), 10, t0);
    if (!template) throw new Error("no template");
    const call = transfer(1400n);
    const build = () =>
      buildWarmTransaction({
        template,
        payer,
        signingKey: ed25519SigningKey(payer),
        invocation: invocationFor(call),
        call,
        expirationLedger: 30,
        networkPassphrase: passphrase,
        nowMs: t0,
      });
    const [a, b] = [build(), build()];
    const nonce = (e: string | null) =>
      decodeTransfer(e ?? "", passphrase)
        .auth[0]?.credentials()
        .address()
        .nonce()
        .toString();
    expect(nonce(a)).not.toBe(nonce(b));
  });

  it.each([
    ["same kind", { amount: "1400" }, true],
    ["another price of the same digit count", { amount: "1500" }, true],
    ["a price with more digits", { amount: "14000" }, false],
    ["another payee", { payTo: Keypair.random().publicKey() }, false],
  ])("cache key: %s → shared %s", (_n, change, shared) => {
    const base = { payer: payer.publicKey(), payTo, asset, network: "stellar:testnet", amount: "1400" };
    expect(templateKey({ ...base, ...change }) === templateKey(base)).toBe(shared);
  });

  it("templates expire, are bounded and can be forgotten", () => {
    let now = 0;
    const cache = new PrepareCache(1_000, () => now, 2);
    const t = { envelope: "", ledger: 1, atMs: 0, validForSeconds: 300 };
    cache.remember("a", t);
    cache.remember("b", t);
    cache.remember("c", t);
    expect(cache.size).toBe(2);
    expect(cache.get("a")).toBeUndefined();
    expect(cache.get("c")).toBe(t);
    cache.forget("c");
    expect(cache.get("c")).toBeUndefined();
    now = 5_000;
    expect(cache.get("b")).toBeUndefined();
  });
});
