import { createPrivateKey, randomBytes, sign } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { hash, xdr } from "@stellar/stellar-sdk";
import type { Keypair } from "@stellar/stellar-sdk";
import { networkId, scAddressOf } from "../stellar/xdr-cache.js";

/**
 * Payments without round trips (docs/configuration.md, Wallet: `wallet.prepare_cache`). Building
 * a payment the official way asks the Soroban RPC three times (the latest ledger, a simulation
 * to learn the auth entry and footprint, a second one with the entry signed for the resource
 * fee). For one payer paying one payee in one asset, the answers differ between payments only
 * in what the wallet chooses itself: the auth nonce, its expiration ledger and the time bounds.
 * So the first payment of a kind is built the official way and kept as a template; the next
 * ones are that transaction with a fresh nonce, an expiration counted from the ledger seen then
 * (advanced by the configured close time), the nonce's footprint key rewritten and a new auth
 * signature made locally. Nothing else of the template is trusted blindly: the invocation is
 * rebuilt from the agreed transfer, not copied.
 *
 *   cold: RPC ×3 ─▶ transaction ─▶ remember(template: envelope, ledger, when)
 *   warm: template (younger than maxAgeMs) ─▶ new nonce, expiration, time bounds, signature ─▶ transaction
 *   a warm payment refused by the server ─▶ forget: the next one is cold again
 */
export interface PreparedTemplate {
  /** The cold payment's transaction envelope (base64), unsigned at the envelope level. */
  envelope: string;
  /** The latest ledger the RPC reported for it, and when (ms). */
  ledger: number;
  atMs: number;
  /** Seconds the template's time bounds ran past its build time (the SDK's default timeout). */
  validForSeconds: number;
}

/** One cache key per payer, payee, asset, network and amount class (its digit count). */
export function templateKey(t: {
  payer: string;
  payTo: string;
  asset: string;
  network: string;
  amount: string;
}): string {
  return `${t.network} ${t.payer} ${t.payTo} ${t.asset} ${t.amount.length}`;
}

export class PrepareCache {
  private readonly templates = new Map<string, PreparedTemplate>();

  constructor(
    /** A template older than this is rebuilt the official way (fresh ledger, fresh simulation). */
    private readonly maxAgeMs = 60_000,
    private readonly now: () => number = Date.now,
    /** Bounded: one entry per payee and asset the wallet pays. */
    private readonly maxEntries = 256,
  ) {}

  get(key: string): PreparedTemplate | undefined {
    const t = this.templates.get(key);
    if (!t) return undefined;
    if (this.now() - t.atMs > this.maxAgeMs) {
      this.templates.delete(key);
      return undefined;
    }
    return t;
  }

  remember(key: string, template: PreparedTemplate): void {
    if (!this.templates.has(key) && this.templates.size >= this.maxEntries) {
      const oldest = this.templates.keys().next().value;
      if (oldest !== undefined) this.templates.delete(oldest);
    }
    this.templates.set(key, template);
  }

  forget(key?: string): void {
    if (key === undefined) this.templates.clear();
    else this.templates.delete(key);
  }

  get size(): number {
    return this.templates.size;
  }
}

/** The ledger now, estimated from the template's ledger and the configured close time. */
export function estimatedLedger(t: PreparedTemplate, nowMs: number, closeSeconds: number): number {
  return t.ledger + Math.floor(Math.max(0, nowMs - t.atMs) / (closeSeconds * 1000));
}

/** RFC 8410 PKCS#8 wrapping of a raw Ed25519 seed, so node:crypto signs with the wallet key. */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * The wallet key for node:crypto: the SDK's pure-JS Ed25519 (and its verify-after-sign in
 * authorizeEntry) cost milliseconds of CPU per payment; OpenSSL signs in tens of microseconds.
 */
export function ed25519SigningKey(keypair: Keypair): KeyObject {
  return createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, keypair.rawSecretKey()]),
    format: "der",
    type: "pkcs8",
  });
}

/**
 * Signs an address-credentials entry as the SDK's authorizeEntry does: Ed25519 over
 * sha256(HashIdPreimage::SorobanAuthorization{networkId, nonce, expiration, invocation}), the
 * signature as `[{public_key, signature}]`.
 */
export function signAuthEntry(
  entry: xdr.SorobanAuthorizationEntry,
  key: KeyObject,
  publicKey: Buffer,
  expirationLedger: number,
  networkPassphrase: string,
): xdr.SorobanAuthorizationEntry {
  const creds = entry.credentials().address();
  const preimage = xdr.HashIdPreimage.envelopeTypeSorobanAuthorization(
    new xdr.HashIdPreimageSorobanAuthorization({
      networkId: networkId(networkPassphrase),
      nonce: creds.nonce(),
      signatureExpirationLedger: expirationLedger,
      invocation: entry.rootInvocation(),
    }),
  );
  const signature = sign(null, hash(preimage.toXDR()), key);
  creds.signatureExpirationLedger(expirationLedger);
  creds.signature(
    xdr.ScVal.scvVec([
      xdr.ScVal.scvMap([
        new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol("public_key"), val: xdr.ScVal.scvBytes(publicKey) }),
        new xdr.ScMapEntry({ key: xdr.ScVal.scvSymbol("signature"), val: xdr.ScVal.scvBytes(signature) }),
      ]),
    ]),
  );
  return entry;
}

export interface WarmPayment {
  template: PreparedTemplate;
  payer: Keypair;
  /** `payer`'s key for node:crypto (ed25519SigningKey), made once. */
  signingKey: KeyObject;
  /** The agreed transfer, rebuilt from the requirement (never taken from the template). */
  invocation: xdr.SorobanAuthorizedInvocation;
  call: xdr.InvokeContractArgs;
  expirationLedger: number;
  networkPassphrase: string;
  nowMs: number;
}

/**
 * The template's transaction for this payment: the one operation's host function and auth
 * replaced, the payer's nonce key in the footprint replaced, fresh time bounds. Returns null
 * when the template does not have the shape a cold payment has (then the payment goes cold).
 */
export function buildWarmTransaction(w: WarmPayment): string | null {
  const envelope = xdr.TransactionEnvelope.fromXDR(w.template.envelope, "base64");
  if (envelope.switch() !== xdr.EnvelopeType.envelopeTypeTx()) return null;
  const tx = envelope.v1().tx();
  const ops = tx.operations();
  const op = ops[0];
  if (ops.length !== 1 || !op || op.body().switch() !== xdr.OperationType.invokeHostFunction()) return null;
  if (tx.ext().switch() !== 1) return null;
  const data = tx.ext().sorobanData();

  const payerAddress = scAddressOf(w.payer.publicKey());
  const nonce = xdr.Int64.fromString(randomBytes(8).readBigInt64BE().toString());
  const unsigned = new xdr.SorobanAuthorizationEntry({
    credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
      new xdr.SorobanAddressCredentials({
        address: payerAddress,
        nonce,
        signatureExpirationLedger: 0,
        signature: xdr.ScVal.scvVoid(),
      }),
    ),
    rootInvocation: w.invocation,
  });
  const signed = signAuthEntry(
    unsigned,
    w.signingKey,
    w.payer.rawPublicKey(),
    w.expirationLedger,
    w.networkPassphrase,
  );

  // The nonce is a temporary ledger entry of the payer's address (the host writes it to spend it).
  const footprint = data.resources().footprint();
  const payerXdr = payerAddress.toXDR("base64");
  const rewritten = footprint.readWrite().map((key) => {
    if (key.switch() !== xdr.LedgerEntryType.contractData()) return key;
    const cd = key.contractData();
    if (cd.key().switch() !== xdr.ScValType.scvLedgerKeyNonce()) return key;
    if (cd.contract().toXDR("base64") !== payerXdr) return key;
    return xdr.LedgerKey.contractData(
      new xdr.LedgerKeyContractData({
        contract: cd.contract(),
        key: xdr.ScVal.scvLedgerKeyNonce(new xdr.ScNonceKey({ nonce })),
        durability: cd.durability(),
      }),
    );
  });
  footprint.readWrite(rewritten);

  op.body(
    xdr.OperationBody.invokeHostFunction(
      new xdr.InvokeHostFunctionOp({
        hostFunction: xdr.HostFunction.hostFunctionTypeInvokeContract(w.call),
        auth: [signed],
      }),
    ),
  );
  const nowSeconds = Math.floor(w.nowMs / 1000);
  tx.cond(
    xdr.Preconditions.precondTime(
      new xdr.TimeBounds({
        minTime: xdr.Uint64.fromString("0"),
        maxTime: xdr.Uint64.fromString(String(nowSeconds + w.template.validForSeconds)),
      }),
    ),
  );
  return envelope.toXDR("base64");
}

/** What a cold transaction says for its template: its time bounds' length past `builtAtMs`. */
export function templateFrom(
  envelopeBase64: string,
  ledger: number,
  builtAtMs: number,
): PreparedTemplate | null {
  const envelope = xdr.TransactionEnvelope.fromXDR(envelopeBase64, "base64");
  if (envelope.switch() !== xdr.EnvelopeType.envelopeTypeTx()) return null;
  const cond = envelope.v1().tx().cond();
  if (cond.switch() !== xdr.PreconditionType.precondTime()) return null;
  const maxTime = Number(cond.timeBounds().maxTime().toString());
  const validForSeconds = maxTime - Math.floor(builtAtMs / 1000);
  if (!Number.isFinite(validForSeconds) || validForSeconds <= 0 || validForSeconds > 3600) return null;
  return { envelope: envelopeBase64, ledger, atMs: builtAtMs, validForSeconds };
}
