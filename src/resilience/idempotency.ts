import { createHash } from "node:crypto";

/**
 * Idempotency for app retries: while a payment for a request is in flight or `indeterminate`,
 * an identical request does not pay again; it gets 409 with `X-Stoka-Proxy-Payment-State` and
 * the payment id. "Identical" is the app's `Idempotency-Key` (scoped per client; the IETF
 * httpapi Idempotency-Key draft), or, without one, a fingerprint of (client, method,
 * normalised URL, SHA-256 of the body). A key reused for a different request is a mismatch
 * (the draft's 422). Pure: hashing and a bounded in-memory map, the clock passed in.
 *
 * Entries end when the payment reaches a final state other than indeterminate (`release`),
 * or when their TTL runs out. A full registry never evicts a live in-flight entry (that is the
 * double payment it exists to prevent): it evicts expired entries, then the oldest
 * indeterminate one, and otherwise answers `full` (the proxy answers 503 and pays nothing).
 *
 * @example
 * const id = requestIdentity({ client: "app", method: "POST", url: "https://api.stoka.space/v1/store", body, idempotencyKey: undefined });
 * const reg = new IdempotencyRegistry({ maxEntries: 10_000, inFlightTtlMs: 300_000, indeterminateTtlMs: 86_400_000 });
 * reg.begin(id, "pay-1", 0)  // → { kind: "proceed" }
 * reg.begin(id, "pay-2", 5)  // → { kind: "conflict", state: "in_flight", paymentId: "pay-1" }
 * reg.settle(id, "pay-1", "settled", 9);
 * reg.begin(id, "pay-3", 10) // → { kind: "proceed" }
 */
export interface RequestIdentity {
  /** What entries are keyed by: the key's hash when the app sent one, else the fingerprint. */
  id: string;
  /** The fingerprint of the request itself (to spot a key reused for another request). */
  fingerprint: string;
  source: "idempotency_key" | "fingerprint";
}

export interface IdentityInput {
  client: string;
  method: string;
  /** The absolute upstream URL. */
  url: string;
  body: Uint8Array;
  /** The `Idempotency-Key` header as received, if any. */
  idempotencyKey: string | readonly string[] | undefined;
}

const sha256 = (s: string | Uint8Array) => createHash("sha256").update(s).digest("hex");

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * RFC 3986 §6.2.2 normalisation: scheme and host lowercase (the WHATWG parser does this, and
 * drops a default port and resolves dot segments), a trailing dot of the host dropped,
 * percent-escapes in uppercase hex, escaped unreserved characters decoded, no fragment. The
 * query keeps its order: `?a=1&b=2` and `?b=2&a=1` may mean different things to a server.
 * An unparseable URL is kept verbatim (it cannot be confused with a parseable one).
 */
export function normaliseUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return `unparsed:${raw}`;
  }
  u.hash = "";
  if (u.hostname.endsWith(".")) u.hostname = u.hostname.slice(0, -1);
  const escapes = (s: string) =>
    s.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => {
      const ch = String.fromCharCode(parseInt(hex, 16));
      return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    });
  const path = escapes(u.pathname);
  const search = escapes(u.search);
  return `${u.protocol}//${u.host}${path}${search}`;
}

/**
 * An `Idempotency-Key` value (the draft makes it a structured-field string, `"…"`; plain
 * tokens are common): 1–255 visible ASCII characters. Anything else is ignored, and the
 * fingerprint applies.
 */
export function readIdempotencyKey(value: string | readonly string[] | undefined): string | null {
  if (value === undefined) return null;
  const one = typeof value === "string" ? value : value.length === 1 ? value[0] : undefined;
  if (one === undefined) return null;
  let v = one.trim();
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
  return /^[\x21-\x7e]{1,255}$/.test(v) ? v : null;
}

export function requestIdentity(input: IdentityInput): RequestIdentity {
  const fingerprint = sha256(
    ["fp1", input.client, input.method.toUpperCase(), normaliseUrl(input.url), sha256(input.body)].join("\n"),
  );
  const key = readIdempotencyKey(input.idempotencyKey);
  if (key === null) return { id: `f:${fingerprint}`, fingerprint, source: "fingerprint" };
  // The key itself is not kept: only its hash, scoped by the client that sent it.
  return {
    id: `k:${sha256(["key1", input.client, key].join("\n"))}`,
    fingerprint,
    source: "idempotency_key",
  };
}

export type IdempotencyState = "in_flight" | "indeterminate";

export type BeginResult =
  | { kind: "proceed" }
  | { kind: "conflict"; state: IdempotencyState; paymentId: string }
  /** The same Idempotency-Key came with a different request. */
  | { kind: "mismatch"; paymentId: string }
  /** Every slot holds a live payment; nothing is paid (fail closed). */
  | { kind: "full" };

export interface IdempotencySettings {
  maxEntries: number;
  /** A request that never reports (a bug, a crash) frees its entry after this long. */
  inFlightTtlMs: number;
  /** How long an indeterminate payment keeps blocking repeats (until reconciled). */
  indeterminateTtlMs: number;
}

export const DEFAULT_IDEMPOTENCY: IdempotencySettings = {
  maxEntries: 10_000,
  inFlightTtlMs: 5 * 60_000,
  indeterminateTtlMs: 24 * 3_600_000,
};

interface Entry {
  paymentId: string;
  fingerprint: string;
  state: IdempotencyState;
  expiresAtMs: number;
  sinceMs: number;
}

export class IdempotencyRegistry {
  // A Map iterates in insertion order: the first indeterminate entry found is the oldest one.
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly settings: IdempotencySettings = DEFAULT_IDEMPOTENCY) {
    if (!(settings.maxEntries >= 1)) throw new RangeError("idempotency registry needs at least one entry");
  }

  /** Called just before a payment is opened (reserved) for the request. */
  begin(identity: RequestIdentity, paymentId: string, nowMs: number): BeginResult {
    const held = this.entries.get(identity.id);
    if (held && held.expiresAtMs > nowMs) {
      if (identity.source === "idempotency_key" && held.fingerprint !== identity.fingerprint)
        return { kind: "mismatch", paymentId: held.paymentId };
      return { kind: "conflict", state: held.state, paymentId: held.paymentId };
    }
    if (held) this.entries.delete(identity.id);
    if (this.entries.size >= this.settings.maxEntries && !this.makeRoom(nowMs)) return { kind: "full" };
    this.entries.set(identity.id, {
      paymentId,
      fingerprint: identity.fingerprint,
      state: "in_flight",
      expiresAtMs: nowMs + this.settings.inFlightTtlMs,
      sinceMs: nowMs,
    });
    return { kind: "proceed" };
  }

  private makeRoom(nowMs: number): boolean {
    this.sweep(nowMs);
    if (this.entries.size < this.settings.maxEntries) return true;
    for (const [id, e] of this.entries) {
      if (e.state === "indeterminate") {
        this.entries.delete(id);
        return true;
      }
    }
    return false;
  }

  /**
   * The payment holding the entry waits (for a person's approval) until `untilMs`: the entry
   * lives at least the in-flight TTL past it, so a repeat sent meanwhile is still a repeat and
   * not a second payment for the same request.
   */
  holdUntil(identity: RequestIdentity, paymentId: string, untilMs: number): void {
    const held = this.entries.get(identity.id);
    if (!held || held.paymentId !== paymentId || held.state !== "in_flight") return;
    held.expiresAtMs = Math.max(held.expiresAtMs, untilMs + this.settings.inFlightTtlMs);
  }

  /**
   * The payment reached an outcome. Indeterminate keeps the entry (repeats still must not pay);
   * every other outcome removes it. Only the payment that holds the entry can change it.
   */
  settle(
    identity: RequestIdentity,
    paymentId: string,
    outcome: "settled" | "rejected" | "failed" | "refused" | "indeterminate",
    nowMs: number,
  ): void {
    const held = this.entries.get(identity.id);
    if (!held || held.paymentId !== paymentId) return;
    if (outcome !== "indeterminate") {
      this.entries.delete(identity.id);
      return;
    }
    held.state = "indeterminate";
    held.expiresAtMs = nowMs + this.settings.indeterminateTtlMs;
  }

  /** An indeterminate payment was reconciled (settled or not): repeats may pay again. */
  releasePayment(paymentId: string): boolean {
    for (const [id, e] of this.entries) {
      if (e.paymentId === paymentId) {
        this.entries.delete(id);
        return true;
      }
    }
    return false;
  }

  /** After a restart: indeterminate payments whose identity the ledger kept block repeats again. */
  seedIndeterminate(
    id: string,
    fingerprint: string,
    paymentId: string,
    sinceMs: number,
    nowMs: number,
  ): void {
    const expiresAtMs = sinceMs + this.settings.indeterminateTtlMs;
    if (expiresAtMs <= nowMs || this.entries.has(id)) return;
    if (this.entries.size >= this.settings.maxEntries && !this.makeRoom(nowMs)) return;
    this.entries.set(id, { paymentId, fingerprint, state: "indeterminate", expiresAtMs, sinceMs });
  }

  sweep(nowMs: number): number {
    let removed = 0;
    for (const [id, e] of this.entries) {
      if (e.expiresAtMs <= nowMs) {
        this.entries.delete(id);
        removed += 1;
      }
    }
    return removed;
  }

  snapshot(nowMs: number): { inFlight: number; indeterminate: number; capacity: number } {
    let inFlight = 0;
    let indeterminate = 0;
    for (const e of this.entries.values()) {
      if (e.expiresAtMs <= nowMs) continue;
      if (e.state === "in_flight") inFlight += 1;
      else indeterminate += 1;
    }
    return { inFlight, indeterminate, capacity: this.settings.maxEntries };
  }
}
