import { severityRank } from "./events.js";
import type { EventName, NotificationEvent, Severity } from "./events.js";

/**
 * Which destinations an event goes to. A rule names events, a minimum severity, and (for
 * `budget.threshold`) the thresholds it cares about; an event goes to the union of the
 * destinations of every rule it matches, once each. Pure.
 */
export interface NotificationRule {
  events: readonly EventName[];
  minSeverity: Severity;
  /** budget.threshold: percentages of a limit; default DEFAULT_THRESHOLDS. */
  thresholds?: readonly number[];
  /** Destination names; absent = every destination. */
  destinations?: readonly string[];
}

export const DEFAULT_THRESHOLDS: readonly number[] = [80, 100];

export function ruleThresholds(rule: NotificationRule): readonly number[] {
  return rule.thresholds ?? DEFAULT_THRESHOLDS;
}

export function ruleMatches(rule: NotificationRule, event: NotificationEvent): boolean {
  if (!rule.events.includes(event.name)) return false;
  if (severityRank(event.severity) < severityRank(rule.minSeverity)) return false;
  if (event.name === "budget.threshold") {
    return event.thresholdPercent !== undefined && ruleThresholds(rule).includes(event.thresholdPercent);
  }
  return true;
}

/** Destination names for this event, in the order the destinations are configured. */
export function destinationsFor(
  rules: readonly NotificationRule[],
  allDestinations: readonly string[],
  event: NotificationEvent,
): string[] {
  const wanted = new Set<string>();
  for (const rule of rules) {
    if (!ruleMatches(rule, event)) continue;
    for (const d of rule.destinations ?? allDestinations) wanted.add(d);
  }
  return allDestinations.filter((d) => wanted.has(d));
}

/** Every threshold some rule listens to: what the budget watcher must look for. */
export function watchedThresholds(rules: readonly NotificationRule[]): number[] {
  const set = new Set<number>();
  for (const rule of rules) {
    if (rule.events.includes("budget.threshold")) for (const t of ruleThresholds(rule)) set.add(t);
  }
  return [...set].sort((a, b) => a - b);
}
