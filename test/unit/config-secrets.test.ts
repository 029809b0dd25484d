import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keypair } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import type { ConfigFlags } from "../../src/config/load.js";
import { StokaProxyError } from "../../src/errors.js";

/**
 * Config errors name the field and never repeat a secret put in the wrong place; a listener
 * beyond loopback needs client tokens or an explicit allow_anonymous.
 */
const dir = mkdtempSync(join(tmpdir(), "stoka-config-secrets-"));
let n = 0;
function file(text: string): string {
  const p = join(dir, `c${n++}.yaml`);
  writeFileSync(p, text);
  return p;
}

function configError(env: NodeJS.ProcessEnv, flags: ConfigFlags = {}): StokaProxyError {
  try {
    loadConfig(env, flags);
  } catch (e) {
    expect(e).toBeInstanceOf(StokaProxyError);
    expect((e as StokaProxyError).code).toBe("config_invalid");
    return e as StokaProxyError;
  }
  throw new Error("the configuration was accepted");
}

const TOKEN_HASH = "a".repeat(64);

describe("config errors never repeat a seed or a token", () => {
  const seed = Keypair.random().secret();
  const token = randomBytes(32).toString("base64url");
  const cases: [string, () => [NodeJS.ProcessEnv, ConfigFlags], RegExp][] = [
    ["a seed in STOKA_ENV", () => [{ STOKA_ENV: seed }, {}], /STOKA_ENV: .*Stellar secret seed/],
    ["a token in STOKA_ENV", () => [{ STOKA_ENV: token }, {}], /STOKA_ENV: .*token or secret/],
    [
      "a seed in STOKA_BASE_URL",
      () => [{ STOKA_BASE_URL: seed }, {}],
      /STOKA_BASE_URL: .*Stellar secret seed/,
    ],
    [
      "a seed in --listen",
      () => [{}, { listen: seed }],
      /--listen: expected host:port, got a Stellar secret seed/,
    ],
    [
      "a seed in STOKA_PROXY_LISTEN",
      () => [{ STOKA_PROXY_LISTEN: `${seed}:8402` }, {}],
      /STOKA_PROXY_LISTEN: a Stellar secret seed .* is reachable from other machines/,
    ],
    ["a seed in --upstream", () => [{}, { upstream: seed }], /--upstream: not a URL: a Stellar secret seed/],
    [
      "a seed in a YAML amount",
      () => [{}, { config: file(`budgets: [{ name: b, limits: { day: ${seed} } }]\n`) }],
      /budgets\.0\.limits\.day: expected an amount, got a Stellar secret seed/,
    ],
    ["a seed in a YAML enum", () => [{}, { config: file(`stoka_env: ${seed}\n`) }], /stoka_env/],
    [
      "a seed in wallet.secret_file (the path is quoted, the OS error is not)",
      () => [{}, { config: file(`wallet: { secret_file: ${seed} }\n`) }],
      /wallet\.secret_file: cannot read a Stellar secret seed .*: ENOENT/,
    ],
    [
      "a seed in STELLAR_SECRET_FILE",
      () => [{ STELLAR_SECRET_FILE: seed }, {}],
      /wallet\.secret_file: cannot read a Stellar secret seed/,
    ],
    ["a seed as a YAML key", () => [{}, { config: file(`${seed}: 1\n`) }], /Unrecognized key/],
    [
      "a YAML syntax error on the seed's line",
      () => [{}, { config: file(`stoka_env: test\nlisten: a: ${seed}\n`) }],
      /not valid YAML\/JSON at line 2, column \d+ \(BLOCK_AS_IMPLICIT_KEY\)/,
    ],
    [
      "an unterminated quote before a seed",
      () => [{}, { config: file(`stoka_env: 'test\nwallet: ${seed}\n`) }],
      /not valid YAML\/JSON at line \d+, column \d+/,
    ],
    [
      "a YAML warning on the seed's line (an unknown tag)",
      () => [{}, { config: file(`stoka_env: !seed ${seed}\n`) }],
      /not valid YAML\/JSON at line 1, column 12 \(TAG_RESOLVE_FAILED\)/,
    ],
  ];
  it.each(cases)("%s", (_name, input, expected) => {
    const [env, flags] = input();
    const e = configError(env, flags);
    const text = `${e.message}\n${e.hint}`;
    expect(text).toMatch(expected);
    expect(text).not.toContain(seed);
    expect(text).not.toContain(token);
    expect(text).not.toMatch(/S[A-Z2-7]{55}/);
  });

  it("a harmless wrong value is still shown", () => {
    expect(configError({ STOKA_ENV: "staging" }).message).toContain('got "staging"');
    expect(configError({}, { listen: "nowhere" }).message).toContain('got "nowhere"');
  });
});

describe("a listener beyond loopback needs client tokens or allow_anonymous", () => {
  it("refuses 0.0.0.0 without clients, naming the field and what to do", () => {
    const e = configError({}, { config: file("listen: 0.0.0.0:8402\n") });
    expect(e.message).toMatch(
      /c\d+\.yaml: listen: "0\.0\.0\.0" is reachable .*pay for anyone who can reach it/,
    );
    expect(e.hint).toMatch(/clients:/);
    expect(e.hint).toMatch(/allow_anonymous: true/);
  });

  it.each([
    ["--listen", {}, { listen: "0.0.0.0:1" }, /--listen/],
    ["STOKA_PROXY_LISTEN", { STOKA_PROXY_LISTEN: "[::]:1" }, {}, /STOKA_PROXY_LISTEN/],
    ["a LAN address", { STOKA_PROXY_LISTEN: "192.168.1.10:1" }, {}, /192\.168\.1\.10/],
  ] as const)("refuses it from %s too", (_name, env, flags, field) => {
    expect(configError(env, flags).message).toMatch(field);
  });

  it("starts with clients, with allow_anonymous: true, with --allow-anonymous, and on loopback", () => {
    const clients = `clients: [{ name: a, token_sha256: "${TOKEN_HASH}" }]\n`;
    expect(loadConfig({}, { config: file(`listen: 0.0.0.0:8402\n${clients}`) }).listen.host).toBe("0.0.0.0");
    const open = loadConfig({}, { config: file("listen: 0.0.0.0:8402\nallow_anonymous: true\n") });
    expect(open.allowAnonymous).toBe(true);
    expect(loadConfig({}, { listen: "0.0.0.0:1", allowAnonymous: true }).allowAnonymous).toBe(true);
    for (const listen of ["127.0.0.1:1", "localhost:1", "[::1]:1", "127.1.2.3:1"])
      expect(loadConfig({}, { listen }).allowAnonymous).toBe(false);
  });

  it("allow_anonymous: false is the same as leaving it out", () => {
    expect(() => loadConfig({}, { config: file("listen: 0.0.0.0:8402\nallow_anonymous: false\n") })).toThrow(
      /pay for anyone/,
    );
  });
});
