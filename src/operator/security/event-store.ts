import type { SecurityEvent, SecurityEventCode, StoredSecurityEvent } from "./codes.js";

/**
 * Where security events are kept: the proxy's SQLite file (sqlite-event-store.ts) or its
 * PostgreSQL database (postgres-event-store.ts). The recorder batches writes; a store only
 * appends a batch (one transaction) and keeps at most its row cap, deleting the oldest rows.
 */
export interface EventQuery {
  /** Events at or after this time (epoch ms). */
  sinceMs?: number;
  code?: SecurityEventCode;
  /** Newest rows first are cut at this many; the answer is in write order. */
  limit?: number;
}

export interface EventStore {
  /** Appends every event of the batch in one transaction; returns how many old rows were pruned. */
  append(batch: readonly SecurityEvent[]): Promise<number>;
  list(query?: EventQuery): Promise<StoredSecurityEvent[]>;
  /** Stored events per code (for the status page). */
  countsByCode(sinceMs?: number): Promise<Partial<Record<SecurityEventCode, number>>>;
}

/** Rows kept when no cap is configured: ~40 MB at most with the bounded field lengths. */
export const DEFAULT_MAX_ROWS = 100_000;
export const DEFAULT_LIST_LIMIT = 1_000;
