import { Keypair } from "@stellar/stellar-sdk";
import { StokaProxyError } from "../errors.js";
import { CommandError, runCommand } from "../process/run-command.js";
import { signChallengeMessage } from "../stellar/wallet-auth.js";

/**
 * Signs wallet-auth challenge messages (docs/wire-protocol.md, Wallet-signed routes): Ed25519
 * over the raw UTF-8 bytes, lowercase hex. Either the proxy holds the key (KeyMessageSigner),
 * or a sign command does (CommandMessageSigner: message bytes on stdin, hex signature on stdout).
 */
export interface MessageSigner {
  readonly address: string;
  /** `route`: the wallet-signed route the message is for (a remote signer checks it). */
  signMessage(message: string, context?: { route: string }): Promise<string>;
}

export class KeyMessageSigner implements MessageSigner {
  private readonly keypair: Keypair;

  constructor(secret: string) {
    this.keypair = Keypair.fromSecret(secret);
  }

  get address(): string {
    return this.keypair.publicKey();
  }

  async signMessage(message: string): Promise<string> {
    return signChallengeMessage(this.keypair, message);
  }
}

export class CommandMessageSigner implements MessageSigner {
  constructor(
    private readonly command: string,
    private readonly timeoutMs: number,
    readonly address: string,
  ) {}

  async signMessage(message: string): Promise<string> {
    try {
      return (await runCommand(this.command, Buffer.from(message, "utf8"), this.timeoutMs)).toLowerCase();
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      throw new StokaProxyError(
        e.failure.kind === "timeout" ? "sign_timeout" : "sign_failed",
        `the sign command ${e.message}`,
        "check wallet.sign_command (message bytes on stdin, hex signature on stdout)",
      );
    }
  }
}
