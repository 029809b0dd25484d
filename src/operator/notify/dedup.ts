/**
 * Identical events (same dedup key) within a window are sent once. The window runs from the
 * first sighting and is not stretched by repeats, so a condition that persists is told again
 * once per window. Memory is bounded: keys are kept in arrival order, expired ones are dropped
 * from the front, and past `maxKeys` the oldest goes first. O(1) amortised per call. Pure
 * (the time is passed in).
 */
export class Deduplicator {
  private readonly firstSeen = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** True when `key` was seen less than the window ago (a duplicate: do not send). */
  isDuplicate(key: string, nowMs: number): boolean {
    if (this.windowMs <= 0) return false;
    for (const [k, at] of this.firstSeen) {
      if (nowMs - at < this.windowMs) break;
      this.firstSeen.delete(k);
    }
    const at = this.firstSeen.get(key);
    if (at !== undefined && nowMs - at < this.windowMs) return true;
    this.firstSeen.delete(key);
    this.firstSeen.set(key, nowMs);
    if (this.firstSeen.size > this.maxKeys) {
      const oldest = this.firstSeen.keys().next().value;
      if (oldest !== undefined) this.firstSeen.delete(oldest);
    }
    return false;
  }

  get size(): number {
    return this.firstSeen.size;
  }
}
