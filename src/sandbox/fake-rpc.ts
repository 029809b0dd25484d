import https from "node:https";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { Address, Keypair, SorobanDataBuilder, StrKey, nativeToScVal, xdr } from "@stellar/stellar-sdk";
import { checkAuthEntry } from "../stellar/soroban-auth.js";
import { TransferDecodeError, decodeTransfer, invocationFor } from "../stellar/transfer-transaction.js";
import type { TransferCall } from "../stellar/transfer-transaction.js";
import { TESTNET_USDC_ISSUER } from "../stellar/networks.js";
import type { PemPair } from "../tls/certificates.js";
import type { SandboxChain } from "./chain.js";

/**
 * A fake Soroban RPC (JSON-RPC 2.0 over HTTPS, `POST /`) good enough for `@x402/stellar`'s
 * client to build and sign payments offline, and for its facilitator to verify and settle them
 * (docs/wire-protocol.md "Testing against official x402 servers").
 * `simulateTransaction` works like the host: without auth it records the one address-credentials
 * entry `from` must sign; with auth it enforces it (signature, expiration, nonce, invocation),
 * because the official facilitator trusts the simulation to have done so.
 * `sendTransaction` applies a transfer the way the network would: the envelope signed by its
 * source account at its next sequence number, the same auth enforcement, the nonce consumed and
 * the USDC moved on the chain the emulator reads too; each one is recorded in `settlements`.
 * One instance serves one network passphrase.
 */
const MIN_RESOURCE_FEE = "40000"; // ≤ 49 900: the official facilitator caps the total fee at 50 000

/** One transfer this RPC applied (a facilitator's settlement). */
export interface SettledTransfer {
  /** Hash of the submitted transaction (the facilitator's, not the payer's inner one). */
  hash: string;
  source: string;
  contract: string;
  from: string;
  to: string;
  amount: bigint;
  ledger: number;
  atMs: number;
}

interface AppliedTransaction {
  envelopeXdr: string;
  resultXdr: string;
  resultMetaXdr: string;
  ledger: number;
  createdAt: number;
}

export class FakeSorobanRpc {
  private server: https.Server | null = null;
  url = "";
  /** Calls per method, for tests that count RPC traffic. */
  readonly calls = new Map<string, number>();
  /** Every transfer applied through `sendTransaction`, in order. */
  readonly settlements: SettledTransfer[] = [];
  /** Why each refused submission was refused (for diagnosing a failing test). */
  readonly refusedSubmissions: string[] = [];
  private readonly applied = new Map<string, AppliedTransaction>();

  constructor(
    private readonly chain: SandboxChain,
    private readonly tls: PemPair,
    private readonly now: () => number = Date.now,
  ) {}

  async listen(port = 0, host = "127.0.0.1"): Promise<string> {
    const server = https.createServer({ cert: this.tls.certPem, key: this.tls.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const reply = this.dispatch(Buffer.concat(chunks).toString("utf8"));
        const body = JSON.stringify(reply);
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    this.url = `https://${host}:${(server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private dispatch(text: string): unknown {
    let msg: { id?: unknown; method?: unknown; params?: Record<string, unknown> };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      return { jsonrpc: "2.0", id: null, error: { code: -32700, message: "parse error" } };
    }
    const id = msg.id ?? null;
    const method = String(msg.method);
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
    const ledger = this.chain.clock.current();
    switch (method) {
      case "getHealth":
        return { jsonrpc: "2.0", id, result: { status: "healthy", latestLedger: ledger } };
      case "getNetwork":
        return {
          jsonrpc: "2.0",
          id,
          result: { passphrase: this.chain.info.passphrase, protocolVersion: 23 },
        };
      case "getLatestLedger":
        return {
          jsonrpc: "2.0",
          id,
          result: { id: randomBytes(32).toString("hex"), sequence: ledger, protocolVersion: 23 },
        };
      case "simulateTransaction":
        return { jsonrpc: "2.0", id, result: this.simulate(String(msg.params?.transaction ?? ""), ledger) };
      case "getLedgerEntries":
        return { jsonrpc: "2.0", id, result: this.ledgerEntries(msg.params?.keys, ledger) };
      case "sendTransaction":
        return { jsonrpc: "2.0", id, result: this.submit(String(msg.params?.transaction ?? ""), ledger) };
      case "getTransaction":
        return { jsonrpc: "2.0", id, result: this.transaction(String(msg.params?.hash ?? ""), ledger) };
      default:
        return { jsonrpc: "2.0", id, error: { code: -32601, message: `method ${method} is not emulated` } };
    }
  }

  private simulate(envelope: string, ledger: number): Record<string, unknown> {
    const fail = (error: string) => ({ error, latestLedger: ledger });
    let call: TransferCall;
    try {
      call = decodeTransfer(envelope, this.chain.info.passphrase);
    } catch (err) {
      if (err instanceof TransferDecodeError) return fail(`HostError: ${err.message}`);
      throw err;
    }
    if (call.contract !== this.chain.info.usdcAsset) {
      return fail("HostError: Error(Storage, MissingValue) contract instance not found");
    }
    if (this.chain.balanceOf(call.from) < call.amount) {
      return fail("HostError: Error(Contract, #10) balance is not sufficient to spend");
    }
    let auth: xdr.SorobanAuthorizationEntry[];
    if (call.auth.length === 0) {
      auth = [this.recordAuth(call)];
    } else {
      const enforced = this.enforceAuth(call, ledger);
      if (!enforced.ok) return fail(enforced.reason);
      auth = call.auth;
    }
    return {
      transactionData: this.footprint(call).toXDR("base64"),
      minResourceFee: MIN_RESOURCE_FEE,
      results: [{ auth: auth.map((a) => a.toXDR("base64")), xdr: xdr.ScVal.scvVoid().toXDR("base64") }],
      events: [this.transferEvent(call).toXDR("base64")],
      latestLedger: ledger,
    };
  }

  /** Enforce mode, as the host runs `require_auth`: the one entry, signed by `from`, unused. */
  private enforceAuth(
    call: TransferCall,
    ledger: number,
  ): { ok: true; nonce: string } | { ok: false; reason: string } {
    if (call.auth.length !== 1 || !call.auth[0])
      return { ok: false, reason: "HostError: Error(Auth, InvalidAction) unexpected auth entries" };
    const check = checkAuthEntry(call.auth[0], {
      networkPassphrase: this.chain.info.passphrase,
      signer: call.from,
      invocation: invocationFor(call.call),
      currentLedger: ledger,
    });
    if (!check.ok) return { ok: false, reason: `HostError: Error(Auth, InvalidAction) ${check.reason}` };
    if (this.chain.isNonceUsed(call.from, check.nonce))
      return { ok: false, reason: "HostError: Error(Auth, ExistingValue) nonce already used" };
    return { ok: true, nonce: check.nonce };
  }

  /** Classic account entries for the accounts the chain knows; other keys are absent. */
  private ledgerEntries(keys: unknown, ledger: number): Record<string, unknown> {
    const entries: Record<string, unknown>[] = [];
    for (const k of Array.isArray(keys) ? keys : []) {
      let key: xdr.LedgerKey;
      try {
        key = xdr.LedgerKey.fromXDR(String(k), "base64");
      } catch {
        continue;
      }
      if (key.switch() !== xdr.LedgerEntryType.account()) continue;
      const address = StrKey.encodeEd25519PublicKey(key.account().accountId().ed25519());
      const sequence = this.chain.accountSequence(address);
      if (sequence === undefined) continue;
      const account = new xdr.AccountEntry({
        accountId: Keypair.fromPublicKey(address).xdrAccountId(),
        balance: xdr.Int64.fromString("100000000000"),
        seqNum: xdr.Int64.fromString(sequence.toString()),
        numSubEntries: 0,
        inflationDest: null,
        flags: 0,
        homeDomain: "",
        thresholds: Buffer.from([1, 0, 0, 0]),
        signers: [],
        ext: new xdr.AccountEntryExt(0),
      });
      entries.push({
        key: String(k),
        xdr: xdr.LedgerEntryData.account(account).toXDR("base64"),
        lastModifiedLedgerSeq: ledger,
      });
    }
    return { entries, latestLedger: ledger };
  }

  /**
   * Applies a submitted transfer at once (the next `getTransaction` finds it), or refuses it
   * with status ERROR and nothing changed. Synchronous from checks to state change, so two
   * submissions of one payment cannot both pass.
   */
  private submit(envelope: string, ledger: number): Record<string, unknown> {
    const base = { latestLedger: ledger, latestLedgerCloseTime: String(Math.floor(this.now() / 1000)) };
    const refuse = (reason: string, hash = "") => {
      this.refusedSubmissions.push(reason);
      return { ...base, status: "ERROR", hash };
    };
    let call: TransferCall;
    try {
      call = decodeTransfer(envelope, this.chain.info.passphrase);
    } catch (err) {
      if (err instanceof TransferDecodeError) return refuse(err.message);
      throw err;
    }
    const tx = call.transaction;
    const hash = call.txHash;
    if (this.applied.has(hash)) return { ...base, status: "DUPLICATE", hash };
    const sequence = this.chain.accountSequence(tx.source);
    if (sequence === undefined) return refuse(`source account ${tx.source} does not exist`, hash);
    const source = Keypair.fromPublicKey(tx.source);
    const signed = tx.signatures.some(
      (sig) => sig.hint().equals(source.signatureHint()) && source.verify(tx.hash(), sig.signature()),
    );
    if (!signed) return refuse("transaction is not signed by its source account", hash);
    if (BigInt(tx.sequence) !== sequence + 1n)
      return refuse(`bad sequence ${tx.sequence}, the account is at ${sequence}`, hash);
    const maxTime = Number(tx.timeBounds?.maxTime ?? 0);
    if (maxTime !== 0 && Math.floor(this.now() / 1000) > maxTime)
      return refuse("transaction is too late", hash);
    if (call.contract !== this.chain.info.usdcAsset) return refuse("contract instance not found", hash);
    const enforced = this.enforceAuth(call, ledger);
    if (!enforced.ok) return refuse(enforced.reason, hash);
    if (this.chain.balanceOf(call.from) < call.amount)
      return refuse("balance is not sufficient to spend", hash);
    this.chain.useSequence(tx.source, BigInt(tx.sequence));
    this.chain.consumeNonce(call.from, enforced.nonce);
    this.chain.transfer(call.from, call.to, call.amount);
    const atMs = this.now();
    this.applied.set(hash, {
      envelopeXdr: envelope,
      resultXdr: successResult(tx.fee).toXDR("base64"),
      resultMetaXdr: new xdr.TransactionMeta(0, []).toXDR("base64"),
      ledger,
      createdAt: Math.floor(atMs / 1000),
    });
    this.settlements.push({
      hash,
      source: tx.source,
      contract: call.contract,
      from: call.from,
      to: call.to,
      amount: call.amount,
      ledger,
      atMs,
    });
    return { ...base, status: "PENDING", hash };
  }

  private transaction(hash: string, ledger: number): Record<string, unknown> {
    const closeTime = String(Math.floor(this.now() / 1000));
    const base = {
      latestLedger: ledger,
      latestLedgerCloseTime: closeTime,
      oldestLedger: ledger - 1000,
      oldestLedgerCloseTime: closeTime,
      txHash: hash,
    };
    const found = this.applied.get(hash);
    if (!found) return { ...base, status: "NOT_FOUND" };
    return {
      ...base,
      status: "SUCCESS",
      ledger: found.ledger,
      createdAt: found.createdAt,
      applicationOrder: 1,
      feeBump: false,
      envelopeXdr: found.envelopeXdr,
      resultXdr: found.resultXdr,
      resultMetaXdr: found.resultMetaXdr,
    };
  }

  /** Record mode: the unsigned address-credentials entry the payer must sign. */
  private recordAuth(call: TransferCall): xdr.SorobanAuthorizationEntry {
    return new xdr.SorobanAuthorizationEntry({
      credentials: xdr.SorobanCredentials.sorobanCredentialsAddress(
        new xdr.SorobanAddressCredentials({
          address: Address.fromString(call.from).toScAddress(),
          nonce: xdr.Int64.fromString(randomBytes(8).readBigInt64BE().toString()),
          signatureExpirationLedger: 0,
          signature: xdr.ScVal.scvVoid(),
        }),
      ),
      rootInvocation: invocationFor(call.call),
    });
  }

  /** Read-only: contract instance + issuer account; read-write: both balances. */
  private footprint(call: TransferCall): xdr.SorobanTransactionData {
    const contract = Address.fromString(call.contract).toScAddress();
    const data = (key: xdr.ScVal) =>
      xdr.LedgerKey.contractData(
        new xdr.LedgerKeyContractData({ contract, key, durability: xdr.ContractDataDurability.persistent() }),
      );
    const balance = (who: string) =>
      data(xdr.ScVal.scvVec([xdr.ScVal.scvSymbol("Balance"), Address.fromString(who).toScVal()]));
    const issuer = xdr.LedgerKey.account(
      new xdr.LedgerKeyAccount({ accountId: Keypair.fromPublicKey(TESTNET_USDC_ISSUER).xdrAccountId() }),
    );
    return new SorobanDataBuilder()
      .setReadOnly([data(xdr.ScVal.scvLedgerKeyContractInstance()), issuer])
      .setReadWrite([balance(call.from), balance(call.to)])
      .setResources(2_000_000, 2_000, 1_000)
      .setResourceFee(BigInt(MIN_RESOURCE_FEE))
      .build();
  }

  /** The SAC `transfer` event: topics [transfer, from, to, "USDC:<issuer>"], data i128 amount. */
  private transferEvent(call: TransferCall): xdr.DiagnosticEvent {
    return new xdr.DiagnosticEvent({
      inSuccessfulContractCall: true,
      event: new xdr.ContractEvent({
        ext: new xdr.ExtensionPoint(0),
        contractId: StrKey.decodeContract(call.contract) as unknown as xdr.ContractId,
        type: xdr.ContractEventType.contract(),
        body: new xdr.ContractEventBody(
          0,
          new xdr.ContractEventV0({
            topics: [
              xdr.ScVal.scvSymbol("transfer"),
              Address.fromString(call.from).toScVal(),
              Address.fromString(call.to).toScVal(),
              xdr.ScVal.scvString(`USDC:${TESTNET_USDC_ISSUER}`),
            ],
            data: nativeToScVal(call.amount, { type: "i128" }),
          }),
        ),
      }),
    });
  }
}

/** A successful one-operation `invokeHostFunction` result charging `fee` stroops. */
function successResult(fee: string): xdr.TransactionResult {
  return new xdr.TransactionResult({
    feeCharged: xdr.Int64.fromString(fee),
    result: xdr.TransactionResultResult.txSuccess([
      xdr.OperationResult.opInner(
        xdr.OperationResultTr.invokeHostFunction(
          xdr.InvokeHostFunctionResult.invokeHostFunctionSuccess(Buffer.alloc(32)),
        ),
      ),
    ]),
    ext: new xdr.TransactionResultExt(0),
  });
}
