import { TransferDecodeError, decodeTransfer } from "../stellar/transfer-transaction.js";
import { decodeBase64Json, requirementPrice } from "./payment-header.js";
import type { PaymentPayload, PaymentRequirement } from "./payment-header.js";

/**
 * Before a payment header leaves the proxy, check that the transaction inside pays exactly
 * what was agreed: the asset, the payee and the price. An external signer command cannot make
 * the proxy pay someone else or more. Pure (XDR decoding only).
 */
export function paymentMismatch(
  header: string,
  req: PaymentRequirement,
  networkPassphrase: string,
): string | null {
  let payload: Partial<PaymentPayload>;
  try {
    payload = decodeBase64Json(header.trim()) as Partial<PaymentPayload>;
  } catch {
    return "payment header is not standard base64 JSON";
  }
  const tx = payload?.payload?.transaction;
  if (typeof tx !== "string") return "payment header has no payload.transaction";
  try {
    const call = decodeTransfer(tx, networkPassphrase);
    if (call.contract !== req.asset) return `payment transfers asset ${call.contract}, not ${req.asset}`;
    if (call.to !== req.payTo) return `payment pays ${call.to}, not the agreed payee ${req.payTo}`;
    const price = requirementPrice(req);
    if (price === undefined || call.amount !== BigInt(price))
      return `payment amount ${call.amount} is not the price ${String(price)}`;
    return null;
  } catch (err) {
    if (err instanceof TransferDecodeError) return err.message;
    throw err;
  }
}
