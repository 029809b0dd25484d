/**
 * An external payment signer for tests, following the X_PAYMENT_CMD convention: requirements
 * JSON on stdin (`{x402Version, resource?, accepts: [req], extensions?}`), base64 payment header
 * on stdout. Its key comes from a file (SIGN_SECRET_FILE). Misbehaviours, to prove the proxy
 * checks: SIGN_FORGE_PAYTO=1 pays a random payee; SIGN_FORGE_ACCEPTED=1 sends an `accepted`
 * with one field changed; SIGN_FORGE_VERSION=1 names another x402Version.
 */
import { readFileSync } from "node:fs";
import { Keypair } from "@stellar/stellar-sdk";
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
const signer = new KeyTransactionBuilder({
  secret: readFileSync(process.env.SIGN_SECRET_FILE ?? "", "utf8").trim(),
  network: "stellar:testnet",
  rpcUrl: process.env.SIGN_RPC_URL ?? "",
  timeoutMs: 10_000,
});
const forgedPayee = process.env.SIGN_FORGE_PAYTO === "1";
const tx = await signer.createTransaction(
  forgedPayee ? { ...requirement, payTo: Keypair.random().publicKey() } : requirement,
);
const payload = buildPaymentPayload(offer, tx);
if (process.env.SIGN_FORGE_ACCEPTED === "1") {
  payload.accepted = { ...requirement.raw, maxTimeoutSeconds: String(requirement.maxTimeoutSeconds) };
}
if (process.env.SIGN_FORGE_VERSION === "1") payload.x402Version = input.x402Version === 1 ? 2 : 1;
process.stdout.write(`${encodeBase64Json(payload)}\n`);
