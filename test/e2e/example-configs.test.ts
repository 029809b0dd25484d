import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Keypair } from "@stellar/stellar-sdk";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { isLoopbackHost } from "../../src/config/open-listener.js";
import { parseListen } from "../../src/config/load.js";

/**
 * The example configs under config/ (one per way of deploying, and the every-field reference)
 * pass `stoka-proxy check-config` as an operator runs it, with a generated seed in the secret
 * file; every one whose proxy listens beyond loopback names its clients, each with a budget.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);
const CLI = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];
const FILES = readdirSync(join(ROOT, "config"))
  .filter((f) => f.endsWith(".yaml"))
  .sort();
const tmp = mkdtempSync(join(tmpdir(), "stoka-examples-"));
const seedFile = join(tmp, "seed");
writeFileSync(seedFile, `${Keypair.random().secret()}\n`, { mode: 0o600 });
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface ExampleConfig {
  listen?: string;
  payment_store?: { kind?: string };
  clients?: { name: string; token_sha256: string }[];
  budgets?: { name: string; match?: { clients?: string[] } }[];
}
const read = (f: string) => parse(readFileSync(join(ROOT, "config", f), "utf8")) as ExampleConfig;

describe("config/", () => {
  it("holds the reference and one example per deployment", () => {
    expect(FILES).toEqual(["example.yaml", "gateway.yaml", "host.yaml", "sidecar.yaml"]);
  });

  it.each(FILES)(
    "%s passes check-config",
    async (f) => {
      const r = await run(process.execPath, [...CLI, "check-config", "--config", join(ROOT, "config", f)], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: tmp,
          STELLAR_SECRET_FILE: seedFile,
          // As the gateway's pod sets it from its Secret (check-config does not connect).
          ...(read(f).payment_store?.kind === "postgres"
            ? { STOKA_PROXY_DATABASE_URL: "postgres://stoka_proxy@postgres.stoka.svc:5432/stoka_proxy" }
            : {}),
        },
      });
      expect(r.stderr).toBe("");
      expect(r.stdout).toMatch(/^configuration is valid: stellar:testnet, .* signer: local key\n$/);
    },
    30_000,
  );

  it.each(FILES)("%s: beyond loopback only with client tokens, each client with its own budget", (f) => {
    const c = read(f);
    const listen = parseListen(c.listen ?? "127.0.0.1:8402", f, "listen");
    if (isLoopbackHost(listen.host)) return;
    const clients = c.clients ?? [];
    expect(clients.length, f).toBeGreaterThan(0);
    for (const client of clients) {
      // Client names become the `client` label of the metrics: bounded, label-safe names.
      expect(client.name).toMatch(/^[a-zA-Z0-9_.-]{1,64}$/);
      expect(
        c.budgets?.some((b) => b.match?.clients?.length === 1 && b.match.clients[0] === client.name),
        `${f}: a budget for ${client.name} alone`,
      ).toBe(true);
    }
    expect(new Set(clients.map((x) => x.token_sha256)).size).toBe(clients.length);
  });
});
