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

/**
 * Every route a path can be, with its method: for a caller that knows the URL but not the
 * method (`stoka-proxy pay`, which reads only the 402's `resource`).
 */
export function routesForPath(pathWithQuery: string): { method: string; name: string }[] {
  const path = pathWithQuery.split("?")[0] ?? "";
  return TABLE.filter((r) => r.pattern.test(path)).map((r) => ({ method: r.method, name: r.name }));
}

/** The method a route name is called with, when the name is one of the table's. */
export function routeMethod(name: string): string | undefined {
  return TABLE.find((r) => r.name === name)?.method;
}
