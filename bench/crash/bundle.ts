import { join } from "node:path";
import { build } from "esbuild";

const ROOT = new URL("../..", import.meta.url).pathname;

/** Where the bundle goes: two folders under the root, so `src/observability/version.ts` still finds package.json. */
export const BUNDLE = join(ROOT, "dist/bundle/stoka-proxy.mjs");

/**
 * The crash test starts ~50 proxy processes; on 2 cores the module loader is most of each
 * start (~1.05 s from dist/, ~0.7 s bundled). One file of the same sources, built in about a
 * second. The Stellar SDK stays a package: `src/stellar/sdk-http-guard.ts` patches the axios
 * copy the SDK resolves, which must be the one the SDK uses. Native and optional modules stay
 * packages too.
 */
export async function bundleCli(): Promise<string[]> {
  await build({
    entryPoints: [join(ROOT, "src/cli/main.ts")],
    outfile: BUNDLE,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "warning",
    external: ["better-sqlite3", "pg-native", "@stellar/stellar-sdk", "@x402/*"],
    // Bundled CommonJS dependencies call require(); an ES module has none of its own.
    banner: {
      js: "import { createRequire as __stokaRequire } from 'node:module'; const require = __stokaRequire(import.meta.url);",
    },
  });
  return [BUNDLE];
}
