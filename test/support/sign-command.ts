/**
 * An external payment signer for tests, following the X_PAYMENT_CMD convention: requirements
 * JSON on stdin (`{x402Version, resource?, accepts: [req], extensions?}`), base64 payment header
 * on stdout. Its key comes from a file (SIGN_SECRET_FILE). Misbehaviours, to prove the proxy
 * checks: SIGN_FORGE_PAYTO=1 pays a random payee; SIGN_FORGE_ACCEPTED=1 sends an `accepted`
 * with one field changed; SIGN_FORGE_VERSION=1 names another x402Version; SIGN_FORGE_AUTH=1
 * leaves the transfer call as agreed but has the wallet sign an authorization for another one
 * (a thousand times the price to a random payee), as a command that signs whatever auth entry
 * a simulation handed it would.
 */
import { readFileSync } from "node:fs";
import { Address, Keypair, nativeToScVal, xdr } from "@stellar/stellar-sdk";
import { NETWORKS } from "../../src/stellar/networks.js";
import { authorizationPreimageHash } from "../../src/stellar/soroban-auth.js";
import { KeyTransactionBuilder } from "../../src/wallet/key-transaction.js";
import { installSdkHttpGuard, trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";
import { readRequirement } from "../../src/x402/challenge.js";
import { encodeBase64Json } from "../../src/x402/payment-header.js";
import { buildPaymentPayload } from "../../src/x402/payment-payload.js";
import type { PaymentOffer } from "../../src/x402/payment-payload.js";

const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
  x402Version: 1 | 2;
  resource?: unknown;
  accepts: unknown[];
  extensions?: unknown;
};
const requirement = readRequirement(input.accepts[0]);
if (!requirement) throw new Error("stdin has no usable requirement");
// A top-level `resource` marks the x402 v2 header form; x402Version 1 the v1 body form.
const offer: PaymentOffer = {
  form: input.x402Version === 1 ? "x402v1" : "resource" in input ? "x402v2" : "stoka",
  x402Version: input.x402Version,
  requirement,
  ...("resource" in input ? { resource: input.resource } : {}),
  ...(input.extensions !== undefined ? { extensions: input.extensions } : {}),
};
installSdkHttpGuard({ ledgerCloseSeconds: 5, timeoutMs: 10_000 });
trustExtraCertificates([readFileSync(process.env.SIGN_RPC_CA_FILE ?? "", "utf8")]);
const secret = readFileSync(process.env.SIGN_SECRET_FILE ?? "", "utf8").trim();
const signer = new KeyTransactionBuilder({
  secret,
  network: "stellar:testnet",
  rpcUrl: process.env.SIGN_RPC_URL ?? "",
  timeoutMs: 10_000,
});
const forgedPayee = process.env.SIGN_FORGE_PAYTO === "1";
let tx = await signer.createTransaction(
  forgedPayee ? { ...requirement, payTo: Keypair.random().publicKey() } : requirement,
);
if (process.env.SIGN_FORGE_AUTH === "1") tx = forgeAuthorization(tx, Keypair.fromSecret(secret));
const payload = buildPaymentPayload(offer, tx);
if (process.env.SIGN_FORGE_ACCEPTED === "1") {
  payload.accepted = { ...requirement.raw, maxTimeoutSeconds: String(requirement.maxTimeoutSeconds) };
}
if (process.env.SIGN_FORGE_VERSION === "1") payload.x402Version = input.x402Version === 1 ? 2 : 1;
process.stdout.write(`${encodeBase64Json(payload)}\n`);

/** The same transaction, its auth entry re-pointed at another transfer and signed by `wallet`. */
function forgeAuthorization(envelope: string, wallet: Keypair): string {
  const env = xdr.TransactionEnvelope.fromXDR(envelope, "base64");
  const op = env.v1().tx().operations()[0]?.body().invokeHostFunctionOp();
  const entry = op?.auth()[0];
  if (!op || !entry) throw new Error("no auth entry to forge");
  const call = op.hostFunction().invokeContract();
  const [from, , amount] = call.args() as [xdr.ScVal, xdr.ScVal, xdr.ScVal];
  const bigger = BigInt(amount.i128().lo().toString()) * 1000n;
  const other = new xdr.InvokeContractArgs({
    contractAddress: call.contractAddress(),
    functionName: call.functionName(),
    args: [
      from,
      new Address(Keypair.random().publicKey()).toScVal(),
      nativeToScVal(bigger, { type: "i128" }),
    ],
  });
  entry.rootInvocation(
    new xdr.SorobanAuthorizedInvocation({
      function: xdr.SorobanAuthorizedFunction.sorobanAuthorizedFunctionTypeContractFn(other),
      subInvocations: [],
    }),
  );
  const creds = entry.credentials().address();
  const digest = authorizationPreimageHash(
    NETWORKS["stellar:testnet"].passphrase,
    creds.nonce(),
    creds.signatureExpirationLedger(),
    entry.rootInvocation(),
  );
  creds.signature(
    xdr.ScVal.scvVec([
      xdr.ScVal.scvMap([
        new xdr.ScMapEntry({
          key: xdr.ScVal.scvSymbol("public_key"),
          val: xdr.ScVal.scvBytes(wallet.rawPublicKey()),
        }),
        new xdr.ScMapEntry({
          key: xdr.ScVal.scvSymbol("signature"),
          val: xdr.ScVal.scvBytes(wallet.sign(digest)),
        }),
      ]),
    ]),
  );
  return env.toXDR("base64");
}
