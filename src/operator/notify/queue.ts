import { SEVERITIES, severityRank } from "./events.js";
import type { Severity } from "./events.js";

/**
 * A bounded FIFO of pending deliveries for one destination. When it is full, the victim is the
 * OLDEST entry of the LOWEST severity present, counting the newcomer: a flood of warnings
 * pushes out older warnings, never a queued critical event, and a new info event is dropped
 * itself when everything queued is more severe. Oldest-first (as Prometheus' alert queue
 * drops) because the newest events describe the current state; the status page keeps the full
 * history. Every operation is O(1): one FIFO per severity, merged by arrival number.
 */
interface Entry<T> {
  seq: number;
  item: T;
}

class Fifo<T> {
  private items: (Entry<T> | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }
  push(e: Entry<T>): void {
    this.items.push(e);
  }
  peek(): Entry<T> | undefined {
    return this.items[this.head];
  }
  shift(): Entry<T> | undefined {
    const e = this.items[this.head];
    if (e === undefined) return undefined;
    this.items[this.head] = undefined;
    this.head += 1;
    // Compact now and then so the array does not grow without bound.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return e;
  }
}

export class BoundedQueue<T extends { severity: Severity }> {
  private readonly lanes = SEVERITIES.map(() => new Fifo<T>());
  private seq = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("queue capacity must be ≥ 1");
  }

  get length(): number {
    return this.count;
  }

  /** Adds `item`; returns what had to be dropped to make room (maybe `item` itself), or null. */
  push(item: T): T | null {
    const rank = severityRank(item.severity);
    const entry = { seq: this.seq++, item };
    if (this.count < this.capacity) {
      (this.lanes[rank] as Fifo<T>).push(entry);
      this.count += 1;
      return null;
    }
    const lowest = this.lanes.findIndex((l) => l.length > 0);
    if (lowest < 0 || lowest > rank) return item;
    const victim = (this.lanes[lowest] as Fifo<T>).shift() as Entry<T>;
    (this.lanes[rank] as Fifo<T>).push(entry);
    return victim.item;
  }

  /** The oldest entry of any severity. */
  shift(): T | undefined {
    let best: Fifo<T> | undefined;
    for (const lane of this.lanes) {
      const head = lane.peek();
      if (head !== undefined && (best === undefined || head.seq < (best.peek() as Entry<T>).seq)) best = lane;
    }
    const e = best?.shift();
    if (e === undefined) return undefined;
    this.count -= 1;
    return e.item;
  }

  /** Empties the queue, returning what it held (oldest first). */
  drain(): T[] {
    const out: T[] = [];
    for (let e = this.shift(); e !== undefined; e = this.shift()) out.push(e);
    return out;
  }
}
