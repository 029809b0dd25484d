import { checkAuthEntry } from "../stellar/soroban-auth.js";
import { TransferDecodeError, decodeTransfer, invocationFor } from "../stellar/transfer-transaction.js";
import { jsonEqual } from "../x402/json-equal.js";
import type { PaymentPayload } from "../x402/payment-header.js";
import type { ChallengeForm, PaymentShape } from "./switches.js";

/** What the emulator requires of one payment for one request. */
export interface PaymentTerms {
  network: string;
  networkPassphrase: string;
  asset: string;
  payTo: string;
  price: bigint;
  maxTimeoutSeconds: number;
  ledgerCloseSeconds: number;
}

/** What the payment JSON itself must look like for this request. */
export interface PayloadExpectations {
  /** The challenge form the emulator speaks. */
  form: ChallengeForm;
  shape: PaymentShape;
  /** Strict mode: `accepted`, when present, must equal `issued` (and v2 must carry it). */
  strictAccepted: boolean;
  /** The requirement issued for this request, as sent in the 402. */
  issued: Readonly<Record<string, unknown>>;
}

export interface ChainView {
  currentLedger: number;
  isNonceUsed(address: string, nonce: string): boolean;
}

export type PaymentCheck =
  | { ok: true; payer: string; nonce: string; txHash: string; amount: bigint }
  | { ok: false; status: 400 | 402; reason: string };

const refuse = (reason: string): PaymentCheck => ({ ok: false, status: 402, reason });
const malformed = (reason: string): PaymentCheck => ({ ok: false, status: 400, reason });

/**
 * Verifies an x402 "exact" Stellar payment offline, as a facilitator would before settling
 * (the checks docs/wire-protocol.md, The payment header, describes). Pure: reads the chain view,
 * changes nothing. 400 = the header cannot be understood; 402 = understood but not acceptable.
 */
export function verifyPayment(
  payload: unknown,
  terms: PaymentTerms,
  chain: ChainView,
  expect: PayloadExpectations,
): PaymentCheck {
  if (typeof payload !== "object" || payload === null) return malformed("payment is not a JSON object");
  const p = payload as Partial<PaymentPayload>;
  const transaction = p.payload?.transaction;
  if (typeof transaction !== "string" || transaction.length === 0) {
    return malformed("payment has no payload.transaction");
  }
  const v1 = v1ShapeViolation(p, expect.form);
  if (v1) return refuse(v1);
  const hasAccepted = typeof p.accepted === "object" && p.accepted !== null;
  const hasFlat = typeof p.scheme === "string" && typeof p.network === "string";
  if (expect.strictAccepted && expect.form === "x402v2") {
    if (p.x402Version !== 2) return refuse(`x402Version ${JSON.stringify(p.x402Version)} is not 2`);
    if (!hasAccepted) return refuse("No matching payment requirements: the payment has no `accepted`");
  }
  if (expect.shape === "accepted" && !hasAccepted)
    return malformed("payment lacks `accepted` (x402 v2 shape expected)");
  if (expect.shape === "flat" && !hasFlat) return malformed("payment lacks top-level `scheme`/`network`");
  if (!hasAccepted && !hasFlat) return malformed("payment names neither `accepted` nor `scheme`/`network`");

  const scheme = hasAccepted ? p.accepted?.scheme : p.scheme;
  const network = hasAccepted ? p.accepted?.network : p.network;
  if (scheme !== "exact") return refuse(`unsupported scheme ${String(scheme)}`);
  if (network !== terms.network || (hasFlat && p.network !== terms.network)) {
    return refuse(`payment is for network ${String(network)}, this server takes ${terms.network}`);
  }
  if (hasAccepted && (p.accepted?.payTo !== terms.payTo || p.accepted?.asset !== terms.asset)) {
    return refuse("payment `accepted` names another payee or asset than this server's requirements");
  }
  if (expect.strictAccepted && "accepted" in p && !jsonEqual(p.accepted, expect.issued)) {
    return refuse(
      "No matching payment requirements: `accepted` is not the requirement issued for this request",
    );
  }

  let call;
  try {
    call = decodeTransfer(transaction, terms.networkPassphrase);
  } catch (err) {
    if (err instanceof TransferDecodeError) return refuse(err.message);
    throw err;
  }
  if (call.contract !== terms.asset)
    return refuse(`transfer is on contract ${call.contract}, not the USDC asset`);
  if (call.to !== terms.payTo) return refuse(`transfer pays ${call.to}, not the payee ${terms.payTo}`);
  if (call.amount !== terms.price) {
    return refuse(`transfer amount ${call.amount} does not match the price ${terms.price}`);
  }
  if (call.auth.length !== 1 || !call.auth[0]) {
    return refuse(`expected exactly one authorization entry, got ${call.auth.length}`);
  }
  const maxLedgers = Math.ceil(terms.maxTimeoutSeconds / terms.ledgerCloseSeconds) + 2;
  const auth = checkAuthEntry(call.auth[0], {
    networkPassphrase: terms.networkPassphrase,
    signer: call.from,
    invocation: invocationFor(call.call),
    currentLedger: chain.currentLedger,
    maxExpirationLedger: chain.currentLedger + maxLedgers,
  });
  if (!auth.ok) return refuse(auth.reason);
  if (chain.isNonceUsed(call.from, auth.nonce)) return refuse("payment was already used (nonce replayed)");
  return { ok: true, payer: call.from, nonce: auth.nonce, txHash: call.txHash, amount: call.amount };
}

const V1_KEYS = ["network", "payload", "scheme", "x402Version"];

/** The x402 v1 form takes exactly the v1 PaymentPayload: `{x402Version: 1, scheme, network, payload}`. */
function v1ShapeViolation(p: Partial<PaymentPayload>, form: ChallengeForm): string | null {
  if (form !== "x402v1") return null;
  const keys = Object.keys(p).sort();
  const exact = keys.length === V1_KEYS.length && keys.every((k, i) => k === V1_KEYS[i]);
  if (p.x402Version !== 1 || typeof p.scheme !== "string" || typeof p.network !== "string" || !exact) {
    return `an x402 v1 payment is {x402Version: 1, scheme, network, payload}; got keys ${keys.join(", ")} with x402Version ${JSON.stringify(p.x402Version)}`;
  }
  return null;
}
