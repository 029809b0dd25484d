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
 * client to build and sign payments offline (stellar-x402-notes.md "A fake Soroban RPC").
 * `simulateTransaction` works like the host: without auth it records the one address-credentials
 * entry `from` must sign; with auth it enforces it (signature, expiration, nonce, invocation),
 * because the official facilitator trusts the simulation to have done so.
 * One instance serves one network passphrase. The facilitator-only methods (getLedgerEntries,
 * sendTransaction, getTransaction) are not emulated: the emulator settles payments itself.
 */
const MIN_RESOURCE_FEE = "40000"; // ≤ 49 900: the official facilitator caps the total fee at 50 000

export class FakeSorobanRpc {
  private server: https.Server | null = null;
  url = "";
  /** Calls per method, for tests that count RPC traffic. */
  readonly calls = new Map<string, number>();

  constructor(
    private readonly chain: SandboxChain,
    private readonly tls: PemPair,
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
      if (call.auth.length !== 1 || !call.auth[0])
        return fail("HostError: Error(Auth, InvalidAction) unexpected auth entries");
      const check = checkAuthEntry(call.auth[0], {
        networkPassphrase: this.chain.info.passphrase,
        signer: call.from,
        invocation: invocationFor(call.call),
        currentLedger: ledger,
      });
      if (!check.ok) return fail(`HostError: Error(Auth, InvalidAction) ${check.reason}`);
      if (this.chain.isNonceUsed(call.from, check.nonce))
        return fail("HostError: Error(Auth, ExistingValue) nonce already used");
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
