import { Agent, request } from "undici";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Account, Keypair, Operation, TransactionBuilder, xdr, nativeToScVal } from "@stellar/stellar-sdk";
import type { Transaction } from "@stellar/stellar-sdk";
import type { Sandbox } from "../../src/sandbox/sandbox.js";
import { SandboxChain } from "../../src/sandbox/chain.js";
import { FakeSorobanRpc } from "../../src/sandbox/fake-rpc.js";
import { NETWORKS } from "../../src/stellar/networks.js";
import { authorizationPreimageHash } from "../../src/stellar/soroban-auth.js";
import { issueLeafCertificate } from "../../src/tls/certificates.js";
import { parseChallenge } from "../../src/x402/challenge.js";
import type { PaymentPayload, PaymentRequirement } from "../../src/x402/payment-header.js";
import { decodeBase64Json, encodeBase64Json } from "../../src/x402/payment-header.js";
import { buildPaymentPayload, offerFor } from "../../src/x402/payment-payload.js";
import type { PaymentOffer } from "../../src/x402/payment-payload.js";
import { send } from "../support/stoka-client.js";
import type { TestStokaClient } from "../support/stoka-client.js";
import { TestStokaClient as Client } from "../support/stoka-client.js";
import { directClient, resetSwitches, startTestSandbox } from "../support/sandbox-fixture.js";

/**
 * The tamper matrix: every kind of bad payment is refused with a reason, and nothing is stored
 * or charged. The emulator's own record of charges and the chain balances are the truth.
 */
let sb: Sandbox;
let pubnet: { chain: SandboxChain; rpc: FakeSorobanRpc };
beforeAll(async () => {
  sb = await startTestSandbox();
  // A second fake network: pubnet's passphrase, so signatures made there must fail on testnet.
  const chain = new SandboxChain({
    ...NETWORKS["stellar:pubnet"],
    usdcAsset: NETWORKS["stellar:testnet"].usdcAsset,
  });
  const rpc = new FakeSorobanRpc(chain, await issueLeafCertificate(sb.ca, ["127.0.0.1"]));
  await rpc.listen();
  pubnet = { chain, rpc };
});
afterAll(async () => {
  await pubnet.rpc.close();
  await sb.close();
});
beforeEach(() => resetSwitches(sb));

const BODY = Buffer.from("x".repeat(42));
const PRICE = 1400n;
const FUNDS = 100n * 10_000_000n;

async function challengeFor(key: string): Promise<PaymentOffer> {
  const res = await send("POST", `${sb.emulator.httpUrl}/v1/store`, {
    headers: { "x-stoka-key": key },
    body: BODY,
  });
  const parsed = parseChallenge(res.headers, res.body.toString());
  if (!parsed.ok) throw new Error(parsed.reason);
  return offerFor(parsed.challenge, parsed.challenge.accepts[0] as PaymentRequirement);
}

/** The same offer with its requirement (typed view and the echoed `accepted`) changed. */
function withAccepted(offer: PaymentOffer, patch: Partial<Pick<PaymentRequirement, "network" | "asset">>) {
  const requirement = { ...offer.requirement, ...patch, raw: { ...offer.requirement.raw, ...patch } };
  return { ...offer, requirement };
}

async function submit(key: string, payment: string) {
  return send("POST", `${sb.emulator.httpUrl}/v1/store`, {
    headers: { "x-stoka-key": key, "x-payment": payment },
    body: BODY,
  });
}

/** Rewrites the transaction inside a payment header. */
function rewrite(payment: string, edit: (op: xdr.InvokeHostFunctionOp) => void): string {
  const p = decodeBase64Json(payment) as PaymentPayload;
  const env = xdr.TransactionEnvelope.fromXDR(p.payload.transaction, "base64");
  const op = env.v1().tx().operations()[0]?.body().invokeHostFunctionOp();
  if (!op) throw new Error("no invokeHostFunction");
  edit(op);
  p.payload.transaction = env.toXDR("base64");
  return encodeBase64Json(p);
}

function setAmount(args: xdr.ScVal[], amount: bigint): xdr.ScVal[] {
  return [args[0] as xdr.ScVal, args[1] as xdr.ScVal, nativeToScVal(amount, { type: "i128" })];
}

/** Re-signs the (single) auth entry with `by`, optionally claiming `claimKey` as the signer. */
function resign(op: xdr.InvokeHostFunctionOp, by: Keypair, claimKey: Keypair = by): void {
  const entry = op.auth()[0];
  if (!entry) throw new Error("no auth entry");
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
          val: xdr.ScVal.scvBytes(claimKey.rawPublicKey()),
        }),
        new xdr.ScMapEntry({
          key: xdr.ScVal.scvSymbol("signature"),
          val: xdr.ScVal.scvBytes(by.sign(digest)),
        }),
      ]),
    ]),
  );
}

async function expectRefused(
  c: TestStokaClient,
  key: string,
  payment: string,
  status: number,
  reason: RegExp,
) {
  const res = await submit(key, payment);
  expect(res.status).toBe(status);
  expect(String(res.json().error)).toMatch(reason);
  expect(sb.emulator.chargedTotal(c.address)).toBe(0n);
  expect(sb.emulator.state.getBlob(c.address, key)).toBeUndefined();
  expect(sb.chain.balanceOf(c.address)).toBe(FUNDS);
  expect(sb.chain.balanceOf(sb.payTo)).toBe(sb.emulator.chargedTotal());
}

describe("tamper matrix: refused with a reason, nothing stored or charged", () => {
  it("forged: auth entry re-signed by another key", async () => {
    const c = directClient(sb);
    const pay = rewrite(await c.paymentFor(await challengeFor("forged")), (op) =>
      resign(op, Keypair.random()),
    );
    await expectRefused(c, "forged", pay, 402, /different key/);
  });

  it("forged: another key's signature under the payer's public key", async () => {
    const c = directClient(sb);
    const pay = rewrite(await c.paymentFor(await challengeFor("forged2")), (op) =>
      resign(op, Keypair.random(), c.wallet),
    );
    await expectRefused(c, "forged2", pay, 402, /does not verify/);
  });

  it("tampered: amount raised to the price in the call and the auth entry after signing a lower one", async () => {
    const c = directClient(sb);
    const req = await challengeFor("tampered");
    const pay = rewrite(await c.paymentFor(req, { amount: String(PRICE - 1n) }), (op) => {
      const call = op.hostFunction().invokeContract();
      call.args(setAmount(call.args(), PRICE));
      const inv = op.auth()[0]?.rootInvocation().function().contractFn();
      inv?.args(setAmount(inv.args(), PRICE));
    });
    await expectRefused(c, "tampered", pay, 402, /does not verify/);
  });

  it("tampered: call changed but not the signed invocation", async () => {
    const c = directClient(sb);
    const req = await challengeFor("tampered2");
    const pay = rewrite(await c.paymentFor(req, { amount: String(PRICE - 1n) }), (op) => {
      const call = op.hostFunction().invokeContract();
      call.args(setAmount(call.args(), PRICE));
    });
    await expectRefused(c, "tampered2", pay, 402, /exact transfer/);
  });

  it("under-paying: validly signed for less than the price", async () => {
    const c = directClient(sb);
    const pay = await c.paymentFor(await challengeFor("cheap"), { amount: String(PRICE - 1n) });
    await expectRefused(c, "cheap", pay, 402, /does not match the price/);
  });

  it("wrong payee: validly signed to someone else", async () => {
    const c = directClient(sb);
    const offer = await challengeFor("elsewhere");
    const tx = await c.signer.createTransaction({
      ...offer.requirement,
      payTo: Keypair.random().publicKey(),
    });
    await expectRefused(
      c,
      "elsewhere",
      encodeBase64Json(buildPaymentPayload(offer, tx)),
      402,
      /not the payee/,
    );
  });

  it("expired: the signature expiration ledger has passed", async () => {
    const c = directClient(sb);
    const pay = await c.paymentFor(await challengeFor("late"));
    sb.chain.clock.advance(200);
    await expectRefused(c, "late", pay, 402, /expired/);
  });

  it("wrong network: signed with the pubnet passphrase, presented as testnet", async () => {
    const wallet = sb.newWallet();
    pubnet.chain.fund(wallet.publicKey(), FUNDS);
    const c = directClient(sb, wallet);
    const onPubnet = new Client(sb.emulator.httpUrl, wallet, pubnet.rpc.url, "stellar:pubnet");
    const offer = await challengeFor("pubnet");
    const tx = await onPubnet.signer.createTransaction({ ...offer.requirement, network: "stellar:pubnet" });
    await expectRefused(
      c,
      "pubnet",
      encodeBase64Json(buildPaymentPayload(offer, tx)),
      402,
      /does not verify|expired/,
    );
    // …and presented honestly as pubnet, it is refused by name.
    const honest = encodeBase64Json(
      buildPaymentPayload(withAccepted(offer, { network: "stellar:pubnet" }), tx),
    );
    await expectRefused(c, "pubnet", honest, 402, /network stellar:pubnet/);
  });

  it("wrong asset named in `accepted`", async () => {
    const c = directClient(sb);
    const offer = await challengeFor("asset");
    const tx = await c.signer.createTransaction(offer.requirement);
    const pay = encodeBase64Json(
      buildPaymentPayload(withAccepted(offer, { asset: NETWORKS["stellar:pubnet"].usdcAsset }), tx),
    );
    await expectRefused(c, "asset", pay, 402, /another payee or asset/);
  });

  it("insufficient funds at settlement (facilitator refuses)", async () => {
    const c = directClient(sb);
    const pay = await c.paymentFor(await challengeFor("broke"));
    const sink = Keypair.random().publicKey();
    sb.chain.transfer(c.address, sink, FUNDS);
    const res = await submit("broke", pay);
    expect(res.status).toBe(402);
    expect(String(res.json().error)).toMatch(/insufficient/);
    expect(sb.emulator.chargedTotal(c.address)).toBe(0n);
    expect(sb.chain.balanceOf(sink)).toBe(FUNDS);
  });

  it.each([
    ["not base64", "%%%"],
    ["base64 of non-JSON", Buffer.from("hello").toString("base64")],
    [
      "JSON without a transaction",
      encodeBase64Json({ x402Version: 2, scheme: "exact", network: "stellar:testnet" }),
    ],
  ])("undecodable header (%s) is 400", async (_name, header) => {
    const c = directClient(sb);
    await expectRefused(c, "garbage", header, 400, /./);
  });

  it("replayed: the same payment twice is paid once", async () => {
    const c = directClient(sb);
    const pay = await c.paymentFor(await challengeFor("once"));
    const first = await submit("once", pay);
    expect(first.status).toBe(201);
    const again = await submit("once", pay);
    expect(again.status).toBe(402);
    expect(String(again.json().error)).toMatch(/already used/);
    expect(sb.emulator.chargedTotal(c.address)).toBe(PRICE);
    expect(sb.chain.balanceOf(c.address)).toBe(FUNDS - PRICE);
  });

  it("replayed concurrently: ten copies at once are paid once", async () => {
    const c = directClient(sb);
    const pay = await c.paymentFor(await challengeFor("race"));
    const results = await Promise.all(Array.from({ length: 10 }, () => submit("race", pay)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(sb.emulator.chargedTotal(c.address)).toBe(PRICE);
  });

  it("the fake RPC also refuses a forged auth entry (it enforces like the host)", async () => {
    const c = directClient(sb);
    const pay = rewrite(await c.paymentFor(await challengeFor("rpc")), (op) => resign(op, Keypair.random()));
    const tx = (decodeBase64Json(pay) as PaymentPayload).payload.transaction;
    const res = await request(sb.rpc.url, {
      method: "POST",
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "simulateTransaction",
        params: { transaction: tx },
      }),
      dispatcher: new Agent({ connect: { ca: sb.ca.certPem } }),
    });
    const body = (await res.body.json()) as { result: { error?: string } };
    expect(body.result.error).toMatch(/HostError: Error\(Auth/);
  });
});

describe("the fake RPC's sendTransaction applies only what the network would (official facilitator path)", () => {
  const passphrase = NETWORKS["stellar:testnet"].passphrase;

  async function rpcCall(method: string, params: Record<string, unknown>) {
    const res = await request(sb.rpc.url, {
      method: "POST",
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
      dispatcher: new Agent({ connect: { ca: sb.ca.certPem } }),
    });
    return ((await res.body.json()) as { result: Record<string, unknown> }).result;
  }

  /** The payer's transfer, rebuilt with `facilitator` as source and signed by `signer`, as settle() does. */
  function rebuild(
    payment: string,
    facilitator: Keypair,
    signer: Keypair = facilitator,
    seqOffset = 0n,
  ): string {
    const inner = (decodeBase64Json(payment) as PaymentPayload).payload.transaction;
    const parsed = TransactionBuilder.fromXDR(inner, passphrase) as Transaction;
    const op = parsed.operations[0] as Operation.InvokeHostFunction;
    const sorobanData = xdr.TransactionEnvelope.fromXDR(inner, "base64").v1().tx().ext().sorobanData();
    const seq = (sb.chain.accountSequence(facilitator.publicKey()) ?? 0n) + seqOffset;
    const tx = new TransactionBuilder(new Account(facilitator.publicKey(), seq.toString()), {
      fee: "50000",
      networkPassphrase: passphrase,
      sorobanData,
    })
      .setTimeout(60)
      .addOperation(Operation.invokeHostFunction({ func: op.func, auth: op.auth ?? [] }))
      .build();
    tx.sign(signer);
    return tx.toXDR();
  }

  function facilitatorAccount(): Keypair {
    const kp = Keypair.random();
    sb.chain.openAccount(kp.publicKey());
    return kp;
  }

  it("a valid settlement moves the money once, is found by getTransaction, and cannot be replayed", async () => {
    const c = directClient(sb);
    const fac = facilitatorAccount();
    const pay = await c.paymentFor(await challengeFor("settle-ok"));
    const sent = await rpcCall("sendTransaction", { transaction: rebuild(pay, fac) });
    expect(sent.status).toBe("PENDING");
    expect(sb.chain.balanceOf(c.address)).toBe(FUNDS - PRICE);
    expect(sb.rpc.settlements.filter((t) => t.hash === sent.hash)).toHaveLength(1);
    expect((await rpcCall("getTransaction", { hash: sent.hash })).status).toBe("SUCCESS");
    const entries = await rpcCall("getLedgerEntries", {
      keys: [
        xdr.LedgerKey.account(new xdr.LedgerKeyAccount({ accountId: fac.xdrAccountId() })).toXDR("base64"),
      ],
    });
    expect(entries.entries).toHaveLength(1);
    // The same authorization in a new transaction: the nonce is spent.
    const again = await rpcCall("sendTransaction", { transaction: rebuild(pay, fac) });
    expect(again.status).toBe("ERROR");
    expect(sb.chain.balanceOf(c.address)).toBe(FUNDS - PRICE);
  });

  it.each<[string, (pay: string, fac: Keypair) => string, RegExp]>([
    ["an envelope not signed by its source", (pay, fac) => rebuild(pay, fac, Keypair.random()), /not signed/],
    ["a stale sequence number", (pay, fac) => rebuild(pay, fac, fac, -1n), /bad sequence/],
    [
      "a payer authorization re-signed by another key",
      (pay, fac) =>
        rebuild(
          rewrite(pay, (op) => resign(op, Keypair.random())),
          fac,
        ),
      /different key/,
    ],
    ["a source account the chain does not know", (pay) => rebuild(pay, Keypair.random()), /does not exist/],
  ])("refuses %s: nothing moves", async (_name, build, reason) => {
    const c = directClient(sb);
    const fac = facilitatorAccount();
    const pay = await c.paymentFor(await challengeFor("settle-bad"));
    const settled = sb.rpc.settlements.length;
    const sent = await rpcCall("sendTransaction", { transaction: build(pay, fac) });
    expect(sent.status).toBe("ERROR");
    expect(sb.rpc.refusedSubmissions.at(-1)).toMatch(reason);
    expect(sb.rpc.settlements.length).toBe(settled);
    expect(sb.chain.balanceOf(c.address)).toBe(FUNDS);
  });
});
