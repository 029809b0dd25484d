import { spawn } from "node:child_process";
import { StokaProxyError } from "../errors.js";
import type { PaymentRequirement } from "./payment-header.js";
import { requirementPrice } from "./payment-header.js";
import type { PaymentSigner } from "./signer.js";

/**
 * The stoka clients' external signer convention (X_PAYMENT_CMD): the requirements JSON on
 * stdin — `{"x402Version":2,"accepts":[<the chosen requirement, amount set>]}` — and the base64
 * payment header on stdout. Runs through `sh -c`, in its own process group, killed on timeout.
 * The proxy's own proxy variables are not passed on: the command must not loop through us.
 */
export class CommandPaymentSigner implements PaymentSigner {
  readonly kind = "command" as const;

  constructor(
    private readonly command: string,
    private readonly timeoutMs: number,
    readonly address: string | undefined,
  ) {}

  sign(req: PaymentRequirement): Promise<string> {
    const input = JSON.stringify({ x402Version: 2, accepts: [{ ...req, amount: requirementPrice(req) }] });
    const env = { ...process.env };
    for (const k of [
      "HTTP_PROXY",
      "HTTPS_PROXY",
      "http_proxy",
      "https_proxy",
      "ALL_PROXY",
      "all_proxy",
      "STELLAR_SECRET",
    ])
      delete env[k];
    return new Promise((resolve, reject) => {
      const child = spawn("/bin/sh", ["-c", this.command], {
        stdio: ["pipe", "pipe", "pipe"],
        detached: true,
        env,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const kill = () => {
        try {
          if (child.pid) process.kill(-child.pid, "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
      };
      const timer = setTimeout(() => {
        kill();
        finish(() =>
          reject(
            new StokaProxyError(
              "payment_timeout",
              `the payment command did not answer within ${this.timeoutMs} ms`,
              "check X_PAYMENT_CMD (wallet.payment_command) or raise wallet.payment_command_timeout_ms",
            ),
          ),
        );
      }, this.timeoutMs);
      child.stdout.on("data", (c: Buffer) => {
        outBytes += c.length;
        if (outBytes > 64 * 1024) kill();
        else out.push(c);
      });
      child.stderr.on("data", (c: Buffer) => {
        if (err.length < 16) err.push(c);
      });
      child.on("error", (e) =>
        finish(() =>
          reject(
            new StokaProxyError(
              "payment_create_failed",
              `cannot run the payment command: ${e.message}`,
              "check X_PAYMENT_CMD",
            ),
          ),
        ),
      );
      child.on("close", (code) => {
        const header = Buffer.concat(out).toString("utf8").trim();
        if (code !== 0 || header.length === 0) {
          // stderr is not echoed: a signer may print key material there.
          finish(() =>
            reject(
              new StokaProxyError(
                "payment_create_failed",
                `the payment command exited with ${String(code)} and ${header.length === 0 ? "no" : "some"} output`,
                "run X_PAYMENT_CMD by hand with the requirements JSON on stdin",
              ),
            ),
          );
          return;
        }
        finish(() => resolve(header));
      });
      child.stdin.on("error", () => undefined);
      child.stdin.end(input);
    });
  }
}
