import type { ProxyConfig } from "./config.js";

/**
 * The one place the running proxy reads its configuration from (docs/operations.md, Reloading
 * the configuration). A reload swaps the whole object at once: a request reads `current` when
 * it needs a value, so it sees either the old configuration or the new one, never a mix of
 * both halves of one swap.
 */
export class LiveConfig {
  private value: ProxyConfig;
  private loadedAt: number;

  constructor(initial: ProxyConfig, nowMs: number) {
    this.value = initial;
    this.loadedAt = nowMs;
  }

  get current(): ProxyConfig {
    return this.value;
  }

  /** When the configuration in use was last loaded successfully (ms since the epoch). */
  get loadedAtMs(): number {
    return this.loadedAt;
  }

  replace(next: ProxyConfig, nowMs: number): void {
    this.value = next;
    this.loadedAt = nowMs;
  }
}
