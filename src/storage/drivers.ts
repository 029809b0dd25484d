import { createRequire } from "node:module";
import type pgModule from "pg";
import type * as ioredisModule from "ioredis";

/**
 * The PostgreSQL and Redis client libraries, loaded on first use: a proxy on the default SQLite
 * store never needs them, and loading both costs ~6 MB of resident memory per process
 * (bench/README.md, memory). Both are CommonJS, so a synchronous require keeps every caller
 * synchronous.
 */
const load = createRequire(import.meta.url);

let pg: typeof pgModule | undefined;
export function pgDriver(): typeof pgModule {
  return (pg ??= load("pg") as typeof pgModule);
}

let ioredis: typeof ioredisModule | undefined;
export function redisDriver(): typeof ioredisModule.Redis {
  return (ioredis ??= load("ioredis") as typeof ioredisModule).Redis;
}
