import { StokaProxyError } from "../errors.js";
import { CommandError, runCommand } from "../process/run-command.js";
import type { PaymentOffer } from "../x402/payment-payload.js";
import type { PaymentSigner } from "./payment-signer.js";

/**
 * The payment signer by command, the stoka clients' external signer convention (X_PAYMENT_CMD):
 * the requirements JSON on stdin, the base64 payment header on stdout. stdin is the server's 402
 * narrowed to the chosen requirement, every value verbatim (see `commandInput`). What the command returns is checked
 * before use (x402/payment-check.ts): version, `accepted`, asset, payee and price.
 */
export class CommandPaymentSigner implements PaymentSigner {
  readonly kind = "command" as const;

  constructor(
    private readonly command: string,
    private readonly timeoutMs: number,
    readonly address: string | undefined,
  ) {}

  async sign(offer: PaymentOffer): Promise<string> {
    const input = JSON.stringify(commandInput(offer));
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

/**
 * What the command reads: `{x402Version, resource?, accepts: [<chosen requirement>],
 * extensions?}`, i.e. the challenge's own PaymentRequired with `accepts` narrowed to the one
 * requirement the proxy chose, verbatim (no `amount` added to a v1 requirement: its price is
 * `maxAmountRequired`). `resource` and `extensions` appear only for the x402 v2 header form,
 * which is also how a command tells that form (answer `{x402Version: 2, resource, accepted,
 * payload}`) from the stoka body form (`{x402Version: 2, scheme, network, accepted, payload}`);
 * `x402Version: 1` asks for `{x402Version: 1, scheme, network, payload}`.
 */
export function commandInput(offer: PaymentOffer): Record<string, unknown> {
  return {
    x402Version: offer.x402Version,
    ...("resource" in offer ? { resource: offer.resource } : {}),
    accepts: [offer.requirement.raw],
    ...(offer.extensions !== undefined ? { extensions: offer.extensions } : {}),
  };
}
