/**
 * An external payment signer for tests, following the X_PAYMENT_CMD convention: requirements
 * JSON on stdin, base64 payment header on stdout. Its key comes from a file (SIGN_SECRET_FILE).
 * With SIGN_FORGE_PAYTO=1 it pays a random payee instead, to prove the proxy checks.
 */
import { readFileSync } from "node:fs";
import { Keypair } from "@stellar/stellar-sdk";
import { LocalPaymentSigner } from "../../src/stellar/local-signer.js";
import { installSdkHttpGuard, trustExtraCertificates } from "../../src/stellar/sdk-http-guard.js";
import { buildPaymentPayload, encodeBase64Json } from "../../src/x402/payment-header.js";
import type { PaymentRequirement } from "../../src/x402/payment-header.js";

const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { accepts: PaymentRequirement[] };
const req = input.accepts[0] as PaymentRequirement;
installSdkHttpGuard({ ledgerCloseSeconds: 5, timeoutMs: 10_000 });
trustExtraCertificates([readFileSync(process.env.SIGN_RPC_CA_FILE ?? "", "utf8")]);
const signer = new LocalPaymentSigner({
  secret: readFileSync(process.env.SIGN_SECRET_FILE ?? "", "utf8").trim(),
  network: "stellar:testnet",
  rpcUrl: process.env.SIGN_RPC_URL ?? "",
  timeoutMs: 10_000,
});
const terms = process.env.SIGN_FORGE_PAYTO === "1" ? { ...req, payTo: Keypair.random().publicKey() } : req;
const tx = await signer.createTransaction(terms);
process.stdout.write(`${encodeBase64Json(buildPaymentPayload(req, tx))}\n`);
