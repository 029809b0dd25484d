import { createHash, timingSafeEqual } from "node:crypto";
import { scrubSecrets } from "../secrets/redact.js";

/**
 * The kill switch and dry-run, one small state holder that flips at run time (an admin
 * endpoint, a signal), never needing a restart:
 * - stopped: no payment is signed; requests are still proxied, and a 402 goes back to the app
 *   with the reason (`payments_stopped`).
 * - dry run: the payment decision runs as usual (terms, budgets) and is logged and metered as
 *   "would have paid", but nothing is reserved or signed; the app gets the 402 (`dry_run`).
 * Stopped wins over dry run. Each flip records who did it, why and when; the last flips are
 * kept for the admin endpoint and the log. Pure: the clock is an argument.
 *
 * @example
 * const s = new PaymentSwitch();
 * s.set({ stopped: true }, { by: "admin", reason: "wallet rotation", atMs: 1_000 });
 * s.decide() // → { kind: "stopped", reason: "wallet rotation", by: "admin", sinceMs: 1000 }
 * s.set({ stopped: false }, { by: "signal:SIGUSR2", reason: "", atMs: 2_000 });
 * s.decide() // → { kind: "pay" }
 */
export interface Flip {
  /** Who flipped it: `admin:<client>`, `signal:SIGUSR2`, `config` — a short label, never a token. */
  by: string;
  reason: string;
  atMs: number;
}

export interface SwitchState {
  stopped: (Flip & { on: true }) | null;
  dryRun: (Flip & { on: true }) | null;
}

export type SwitchDecision =
  | { kind: "pay" }
  | { kind: "stopped"; reason: string; by: string; sinceMs: number }
  | { kind: "dry_run"; reason: string; by: string; sinceMs: number };

export interface SwitchChange {
  switch: "stopped" | "dry_run";
  on: boolean;
  by: string;
  reason: string;
  atMs: number;
}

const MAX_LABEL = 64;
const MAX_REASON = 200;
const HISTORY = 50;

/**
 * Text that goes into logs, 402 bodies and the admin endpoint: control characters dropped,
 * length bounded, secret-looking pieces replaced (someone will paste a token into a reason).
 */
export function cleanText(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex -- stripping control characters is the point
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim();
  const scrubbed = scrubSecrets(flat);
  return scrubbed.length > max ? `${scrubbed.slice(0, max - 1)}…` : scrubbed;
}

export class PaymentSwitch {
  private current: SwitchState = { stopped: null, dryRun: null };
  private readonly history: SwitchChange[] = [];

  /** Start-up state from config (`payments.stopped`, `payments.dry_run`). */
  constructor(initial: { stopped?: boolean; dryRun?: boolean; atMs?: number } = {}) {
    const at = initial.atMs ?? 0;
    if (initial.stopped)
      this.current.stopped = { on: true, by: "config", reason: "stopped in the config", atMs: at };
    if (initial.dryRun)
      this.current.dryRun = { on: true, by: "config", reason: "dry run in the config", atMs: at };
  }

  decide(): SwitchDecision {
    const s = this.current.stopped;
    if (s) return { kind: "stopped", reason: s.reason, by: s.by, sinceMs: s.atMs };
    const d = this.current.dryRun;
    if (d) return { kind: "dry_run", reason: d.reason, by: d.by, sinceMs: d.atMs };
    return { kind: "pay" };
  }

  /** Sets either switch; returns what actually changed (setting a switch to its state is no change). */
  set(want: { stopped?: boolean; dryRun?: boolean }, flip: Flip): SwitchChange[] {
    const by = cleanText(flip.by, MAX_LABEL) || "unknown";
    const reason = cleanText(flip.reason, MAX_REASON);
    const changes: SwitchChange[] = [];
    const apply = (name: "stopped" | "dryRun", on: boolean | undefined) => {
      if (on === undefined || (this.current[name] !== null) === on) return;
      const label = name === "stopped" ? "stopped" : "dry_run";
      const fallback = on
        ? name === "stopped"
          ? "payments stopped"
          : "dry run: nothing is signed"
        : "switched back";
      this.current[name] = on ? { on: true, by, reason: reason || fallback, atMs: flip.atMs } : null;
      changes.push({ switch: label, on, by, reason: reason || fallback, atMs: flip.atMs });
    };
    apply("stopped", want.stopped);
    apply("dryRun", want.dryRun);
    for (const c of changes) {
      this.history.push(c);
      if (this.history.length > HISTORY) this.history.shift();
    }
    return changes;
  }

  /** The signal's flip: stop when paying, resume when stopped. */
  toggleStopped(flip: Flip): SwitchChange[] {
    return this.set({ stopped: this.current.stopped === null }, flip);
  }

  /** For the admin endpoint: the state and the last flips, oldest first. */
  view(): { state: SwitchState; history: SwitchChange[] } {
    return {
      state: {
        stopped: this.current.stopped ? { ...this.current.stopped } : null,
        dryRun: this.current.dryRun ? { ...this.current.dryRun } : null,
      },
      history: this.history.map((c) => ({ ...c })),
    };
  }
}

/**
 * The admin endpoint's token check: `Authorization: Bearer <token>` against the configured
 * SHA-256 (lowercase hex) of the token, in constant time. The token itself is never stored.
 */
export function adminTokenMatches(authorization: string | undefined, tokenSha256Hex: string): boolean {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? "");
  if (!m || !/^[0-9a-f]{64}$/.test(tokenSha256Hex)) return false;
  const given = createHash("sha256")
    .update(m[1] as string, "utf8")
    .digest();
  return timingSafeEqual(given, Buffer.from(tokenSha256Hex, "hex"));
}
