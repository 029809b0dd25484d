import { randomUUID, randomBytes } from "node:crypto";

/** What the emulated stoka remembers: blobs, mailboxes, charges, challenges and profiles. */
export interface Blob {
  id: string;
  key: string;
  owner: string;
  data: Buffer;
  ttlSeconds: number;
  expiresAtMs: number;
}

export interface QueueMessage {
  id: string;
  from: string;
  data: Buffer;
  /** Hidden from pop until then (at-least-once delivery, visibility timeout). */
  invisibleUntilMs: number;
  receipt: string | null;
}

export interface Charge {
  atMs: number;
  payer: string;
  route: string;
  amount: bigint;
  tx: string;
  nonce: string;
}

export interface Challenge {
  id: string;
  audience: string;
  message: string;
  expiresAtMs: number;
  used: boolean;
}

const blobKey = (owner: string, key: string) => `${owner}\u0000${key}`;
export const VISIBILITY_TIMEOUT_MS = 30_000;
export const CHALLENGE_TTL_MS = 120_000;

export class StokaState {
  private readonly blobs = new Map<string, Blob>();
  private readonly mailboxes = new Map<string, QueueMessage[]>();
  private readonly challenges = new Map<string, Challenge>();
  readonly profiles = new Map<string, string>();
  readonly charges: Charge[] = [];
  /** Requests seen per route name, paid or not (tests count challenge requests with it). */
  readonly requests = new Map<string, number>();

  constructor(private readonly now: () => number) {}

  // --- blobs: identified by (owner, key); expired blobs are gone ---

  getBlob(owner: string, key: string): Blob | undefined {
    const blob = this.blobs.get(blobKey(owner, key));
    if (blob && blob.expiresAtMs <= this.now()) {
      this.blobs.delete(blobKey(owner, key));
      return undefined;
    }
    return blob;
  }

  /** Every live blob with this key, any owner (to quote a retrieve without X-Stoka-Owner). */
  blobsWithKey(key: string): Blob[] {
    const out: Blob[] = [];
    for (const blob of [...this.blobs.values()]) {
      if (blob.key === key && this.getBlob(blob.owner, key)) out.push(blob);
    }
    return out;
  }

  putBlob(owner: string, key: string, data: Buffer, ttlSeconds: number): Blob {
    const existing = this.getBlob(owner, key);
    const blob: Blob = {
      id: existing?.id ?? randomUUID(),
      key,
      owner,
      data,
      ttlSeconds,
      expiresAtMs: this.now() + ttlSeconds * 1000,
    };
    this.blobs.set(blobKey(owner, key), blob);
    return blob;
  }

  deleteBlob(owner: string, key: string): void {
    this.blobs.delete(blobKey(owner, key));
  }

  // --- queues: one mailbox per (owner, topic) ---

  push(to: string, topic: string, from: string, data: Buffer): QueueMessage {
    const msg: QueueMessage = { id: randomUUID(), from, data, invisibleUntilMs: 0, receipt: null };
    const box = this.mailboxes.get(blobKey(to, topic)) ?? [];
    box.push(msg);
    this.mailboxes.set(blobKey(to, topic), box);
    return msg;
  }

  /** The next visible message of a mailbox, without taking it. */
  peek(owner: string, topic: string): QueueMessage | undefined {
    const now = this.now();
    return this.mailboxes.get(blobKey(owner, topic))?.find((m) => m.invisibleUntilMs <= now);
  }

  /** Heads of every mailbox with this topic (to quote a pop without X-Stoka-Owner). */
  peekTopic(topic: string): QueueMessage[] {
    const out: QueueMessage[] = [];
    for (const k of this.mailboxes.keys()) {
      const [owner, t] = k.split("\u0000") as [string, string];
      const head = t === topic ? this.peek(owner, topic) : undefined;
      if (head) out.push(head);
    }
    return out;
  }

  /** Hands out the next visible message with a fresh receipt; it reappears unless acked. */
  take(owner: string, topic: string): QueueMessage | undefined {
    const msg = this.peek(owner, topic);
    if (!msg) return undefined;
    msg.invisibleUntilMs = this.now() + VISIBILITY_TIMEOUT_MS;
    msg.receipt = randomBytes(16).toString("hex");
    return msg;
  }

  /** Removes the message holding this receipt; false when no such delivery is outstanding. */
  ack(owner: string, topic: string, receipt: string): boolean {
    const box = this.mailboxes.get(blobKey(owner, topic));
    const idx = box?.findIndex((m) => m.receipt === receipt) ?? -1;
    if (!box || idx < 0) return false;
    box.splice(idx, 1);
    return true;
  }

  // --- wallet-auth challenges: single use, short-lived, audience-bound ---

  issueChallenge(audience: string): Challenge {
    const id = randomUUID();
    const nonce = randomBytes(16).toString("hex");
    const expiresAtMs = this.now() + CHALLENGE_TTL_MS;
    const message = `stoka-auth:${audience}:${id}:${nonce}:${new Date(expiresAtMs).toISOString()}`;
    const challenge: Challenge = { id, audience, message, expiresAtMs, used: false };
    this.challenges.set(id, challenge);
    return challenge;
  }

  getChallenge(id: string): Challenge | undefined {
    return this.challenges.get(id);
  }

  // --- charges and per-UTC-day usage ---

  recordCharge(charge: Charge): void {
    this.charges.push(charge);
  }

  /** Per-UTC-day spend of `payer` for the last `days` days, today first. */
  usage(payer: string, days: number): { date: string; spent_atomic: string; requests: number }[] {
    const today = Date.UTC(...utcYmd(this.now()));
    const out: { date: string; spent_atomic: string; requests: number }[] = [];
    for (let i = 0; i < days; i++) {
      const dayStart = today - i * 86_400_000;
      let spent = 0n;
      let requests = 0;
      for (const c of this.charges) {
        if (c.payer === payer && c.atMs >= dayStart && c.atMs < dayStart + 86_400_000) {
          spent += c.amount;
          requests += 1;
        }
      }
      out.push({
        date: new Date(dayStart).toISOString().slice(0, 10),
        spent_atomic: spent.toString(),
        requests,
      });
    }
    return out;
  }
}

function utcYmd(ms: number): [number, number, number] {
  const d = new Date(ms);
  return [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
}
