import { randomBytes } from "node:crypto";
import {
  Account,
  Address,
  Contract,
  Keypair,
  StrKey,
  TransactionBuilder,
  authorizeEntry,
  nativeToScVal,
  xdr,
} from "@stellar/stellar-sdk";
import { decodeTransfer, invocationFor } from "../stellar/transfer-transaction.js";

/**
 * The work of a first payment that does not depend on the payment, done once at start: the
 * SDK's XDR types, ed25519 signing and strkey code, and our own decoding of a transfer, are
 * compiled and their tables built on first use, and that cost (milliseconds) landed inside the
 * first paid request after every start. Entirely offline, with a throwaway key: the wallet's
 * key is not used, nothing is sent, and the transaction is for a contract that does not exist.
 * Returns how long it took (ms).
 */
export async function warmUpPaymentCode(networkPassphrase: string): Promise<number> {
  const started = performance.now();
  const payer = Keypair.random();
  const payee = Keypair.random().publicKey();
  const contract = new Contract(StrKey.encodeContract(randomBytes(32)));
  const op = contract.call(
    "transfer",
    nativeToScVal(payer.publicKey(), { type: "address" }),
    nativeToScVal(payee, { type: "address" }),
    nativeToScVal(1234n, { type: "i128" }),
  );
  const call = xdr.Operation.fromXDR(op.toXDR())
    .body()
    .invokeHostFunctionOp()
    .hostFunction()
    .invokeContract();
  const entry = new xdr.SorobanAuthorizationEntry({
    credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
      new xdr.SorobanAddressCredentials({
        address: new Address(payer.publicKey()).toScAddress(),
        nonce: xdr.Int64.fromString("1"),
        signatureExpirationLedger: 100,
        signature: xdr.ScVal.scvVoid(),
      }),
    ),
    rootInvocation: invocationFor(call),
  });
  const signed = await authorizeEntry(entry, payer, 100, networkPassphrase);
  const tx = new TransactionBuilder(new Account(payer.publicKey(), "1"), { fee: "100", networkPassphrase })
    .addOperation(op)
    .setTimeout(60)
    .build();
  tx.sign(payer);
  const envelope = tx.toEnvelope().toXDR("base64");
  decodeTransfer(envelope, networkPassphrase);
  TransactionBuilder.fromXDR(envelope, networkPassphrase);
  signed.toXDR("base64");
  return performance.now() - started;
}
