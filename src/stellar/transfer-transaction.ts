import { Address, FeeBumpTransaction, TransactionBuilder, scValToBigInt, xdr } from "@stellar/stellar-sdk";
import type { Transaction } from "@stellar/stellar-sdk";
import { unsignedTransactionHash } from "./xdr-cache.js";

/** What an x402 "exact" Stellar payment transaction says, once decoded. */
export interface TransferCall {
  transaction: Transaction;
  /** 64-hex hash of the transaction on its network. */
  txHash: string;
  contract: string;
  from: string;
  to: string;
  amount: bigint;
  /** The contract call as `xdr.InvokeContractArgs`, to compare auth entries against. */
  call: xdr.InvokeContractArgs;
  auth: xdr.SorobanAuthorizationEntry[];
}

export class TransferDecodeError extends Error {}

/**
 * Decodes a base64 transaction envelope that must be exactly one `invokeHostFunction` calling
 * `transfer(from, to, amount)` on a contract: the shape of an x402 "exact" Stellar payment.
 */
export function decodeTransfer(envelopeBase64: string, networkPassphrase: string): TransferCall {
  let parsed: Transaction | FeeBumpTransaction;
  try {
    parsed = TransactionBuilder.fromXDR(envelopeBase64, networkPassphrase);
  } catch (err) {
    throw new TransferDecodeError(`transaction is not a valid envelope: ${(err as Error).message}`);
  }
  if (parsed instanceof FeeBumpTransaction)
    throw new TransferDecodeError("fee-bump envelopes are not accepted");
  const tx = parsed;
  if (tx.operations.length !== 1) {
    throw new TransferDecodeError(`expected exactly one operation, got ${tx.operations.length}`);
  }
  const op = tx.operations[0];
  if (!op || op.type !== "invokeHostFunction")
    throw new TransferDecodeError("operation is not invokeHostFunction");
  if (op.func.switch() !== xdr.HostFunctionType.hostFunctionTypeInvokeContract()) {
    throw new TransferDecodeError("host function is not a contract invocation");
  }
  const call = op.func.invokeContract();
  const fn = call.functionName().toString();
  if (fn !== "transfer") throw new TransferDecodeError(`contract function is ${fn}, not transfer`);
  const args = call.args();
  if (args.length !== 3) throw new TransferDecodeError(`transfer takes 3 arguments, got ${args.length}`);
  const [fromArg, toArg, amountArg] = args as [xdr.ScVal, xdr.ScVal, xdr.ScVal];
  let from: string, to: string, amount: bigint;
  try {
    from = Address.fromScVal(fromArg).toString();
    to = Address.fromScVal(toArg).toString();
    if (amountArg.switch() !== xdr.ScValType.scvI128()) throw new Error("amount is not an i128");
    amount = scValToBigInt(amountArg);
  } catch (err) {
    throw new TransferDecodeError(`transfer arguments are malformed: ${(err as Error).message}`);
  }
  return {
    transaction: tx,
    txHash:
      unsignedTransactionHash(
        Buffer.from(envelopeBase64, "base64"),
        tx.signatures.length,
        networkPassphrase,
      ) ?? tx.hash().toString("hex"),
    contract: Address.fromScAddress(call.contractAddress()).toString(),
    from,
    to,
    amount,
    call,
    auth: op.auth ?? [],
  };
}

/** The root invocation a payer's auth entry must authorize for this call. */
export function invocationFor(call: xdr.InvokeContractArgs): xdr.SorobanAuthorizedInvocation {
  return new xdr.SorobanAuthorizedInvocation({
    function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(call),
    subInvocations: [],
  });
}
