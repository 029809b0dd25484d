/**
 * Bounded route names for stoka paths (docs/wire-protocol.md, stoka's routes): used in budgets, logs and
 * metric labels instead of raw URLs. Pure.
 */
const TABLE: { method: string; pattern: RegExp; name: string }[] = [
  { method: "GET", pattern: /^\/\.well-known\/stoka(?:\.json)?$/, name: "manifest" },
  { method: "POST", pattern: /^\/v1\/store$/, name: "store" },
  { method: "PUT", pattern: /^\/v1\/object\/.+$/, name: "update" },
  { method: "DELETE", pattern: /^\/v1\/object\/.+$/, name: "delete" },
  { method: "GET", pattern: /^\/v1\/retrieve\/.+$/, name: "retrieve" },
  { method: "POST", pattern: /^\/v1\/auth\/challenge$/, name: "challenge" },
  { method: "GET", pattern: /^\/v1\/me\/usage$/, name: "usage" },
  { method: "POST", pattern: /^\/v1\/profile$/, name: "profile" },
  { method: "POST", pattern: /^\/v1\/queue\/[^/]+\/[^/]+\/push$/, name: "queue_push" },
  { method: "POST", pattern: /^\/v1\/queue\/[^/]+\/pop$/, name: "queue_pop" },
  { method: "POST", pattern: /^\/v1\/queue\/[^/]+\/ack\/[^/]+$/, name: "queue_ack" },
];

export const ROUTE_NAMES = [...TABLE.map((r) => r.name), "other"] as const;

export function routeName(method: string, pathWithQuery: string): string {
  const path = pathWithQuery.split("?")[0] ?? "";
  const m = method.toUpperCase();
  return TABLE.find((r) => r.method === m && r.pattern.test(path))?.name ?? "other";
}
