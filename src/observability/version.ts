import { readFileSync } from "node:fs";

/**
 * The version a person and a scrape see (`--version`, `stoka_proxy_build_info`): package.json's,
 * read once. It sits two folders up from this file in src/ and in dist/ alike.
 */
function readVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

export const VERSION = readVersion();
