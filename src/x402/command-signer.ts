import { StokaProxyError } from "../errors.js";
import { CommandError, runCommand } from "../process/run-command.js";
import type { PaymentRequirement } from "./payment-header.js";
import { requirementPrice } from "./payment-header.js";
import type { PaymentSigner } from "./signer.js";

/**
 * The stoka clients' external signer convention (X_PAYMENT_CMD): the requirements JSON on
 * stdin — `{"x402Version":2,"accepts":[<the chosen requirement, amount set>]}` — and the base64
 * payment header on stdout. What it returns is checked against the terms before use
 * (payment-check.ts).
 */
export class CommandPaymentSigner implements PaymentSigner {
  readonly kind = "command" as const;

  constructor(
    private readonly command: string,
    private readonly timeoutMs: number,
    readonly address: string | undefined,
  ) {}

  async sign(req: PaymentRequirement): Promise<string> {
    const input = JSON.stringify({ x402Version: 2, accepts: [{ ...req, amount: requirementPrice(req) }] });
    try {
      return await runCommand(this.command, input, this.timeoutMs);
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      if (e.failure.kind === "timeout") {
        throw new StokaProxyError(
          "payment_timeout",
          `the payment command ${e.message}`,
          "check X_PAYMENT_CMD (wallet.payment_command) or raise wallet.payment_command_timeout_ms",
        );
      }
      throw new StokaProxyError(
        "payment_create_failed",
        `the payment command ${e.message}`,
        "run X_PAYMENT_CMD by hand with the requirements JSON on stdin",
      );
    }
  }
}
