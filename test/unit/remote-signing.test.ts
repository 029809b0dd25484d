import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Keypair } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import type { Budget } from "../../src/config/config.js";
import { DEFAULT_WALLET_AUTH, resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import { StokaProxyError } from "../../src/errors.js";
import { decide } from "../../src/payment/decide.js";
import {
  closeFromReport,
  readOutcomeReport,
  readSignRequest,
  walletAuthAllowed,
} from "../../src/payment/remote-signing.js";
import type { OutcomeReport } from "../../src/payment/remote-signing.js";
import { parseChallenge } from "../../src/x402/challenge.js";

/** The signer role's pure checks and the keyless sidecar's config rules, as tables. */
const dir = mkdtempSync(join(tmpdir(), "stoka-remote-signing-"));
const tokenFile = join(dir, "token");
writeFileSync(tokenFile, "a-pod-token-long-enough-0123\n");
const shortToken = join(dir, "short");
writeFileSync(shortToken, "short\n");

describe("walletAuthAllowed: only stoka challenges, for the route's audience, on the token's routes", () => {
  const rules = DEFAULT_WALLET_AUTH;
  const msg = (audience: string) => `stoka-auth:${audience}:c-1:n-1:2030-01-01T00:00:00.000Z`;
  const cases: [string, string, string, string[], boolean | RegExp][] = [
    ["delete, its audience", "delete", msg("delete"), ["delete"], true],
    ["delete, its other spelling", "delete", msg("object-delete"), ["delete"], true],
    ["usage", "usage", msg("usage"), ["delete", "usage"], true],
    ["a route the token lacks", "usage", msg("usage"), ["delete"], /may not have "usage"/],
    ["another route's audience", "delete", msg("usage"), ["delete"], /audience "usage"/],
    ["a foreign audience", "delete", msg("payments"), ["delete"], /audience "payments"/],
    ["not a stoka challenge", "delete", "please sign this", ["delete"], /not a stoka challenge/],
    ["a 32-byte message", "delete", "x".repeat(32), ["delete"], /32-byte/],
    ["a newline smuggled in", "delete", `${msg("delete")}\nmore`, ["delete"], /not a stoka challenge/],
    ["a route with no rule", "other", msg("other"), ["other"], /no wallet_auth rule/],
  ];
  it.each(cases)("%s", (_, route, message, allowedRoutes, expected) => {
    const v = walletAuthAllowed({ route, message, allowedRoutes, rules });
    if (expected === true) expect(v).toEqual({ ok: true });
    else {
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.reason).toMatch(expected as RegExp);
    }
  });
  it("non-strings are refused", () => {
    expect(walletAuthAllowed({ route: 1, message: {}, allowedRoutes: ["delete"], rules }).ok).toBe(false);
  });
});

describe("closeFromReport: only `settled` is taken at the sidecar's word; nothing gives budget back", () => {
  const tx = "ab".repeat(32);
  const cases: [OutcomeReport["state"], string, string][] = [
    ["settled", "settled", "commit"],
    ["rejected", "indeterminate", "markIndeterminate"],
    ["failed", "indeterminate", "markIndeterminate"],
    ["indeterminate", "indeterminate", "markIndeterminate"],
  ];
  it.each(cases)("%s → %s, budget %s", (state, ledger, budget) => {
    const c = closeFromReport({ state, tx: state === "settled" ? tx : null, status: 201, reason: "r" });
    expect([c.state, c.budget]).toEqual([ledger, budget]);
    if (state === "settled") expect(c.tx).toBe(tx);
    else expect(c.reason).toMatch(new RegExp(`the sidecar reported ${state}`));
  });
  it("a report is read within bounds: bad tx dropped, unknown state refused", () => {
    expect(readOutcomeReport({ state: "refunded" }).ok).toBe(false);
    expect(readOutcomeReport([]).ok).toBe(false);
    const r = readOutcomeReport({ state: "settled", tx: "not-a-tx", reason: "x".repeat(1000) });
    expect(r.ok && r.value.tx).toBe(null);
    expect(r.ok && r.value.reason?.length).toBe(300);
  });
});

describe("readSignRequest", () => {
  const good = {
    request: {
      payment_id: "p-1",
      request_id: "r-1",
      method: "POST",
      host: "Test.API.stoka.space.",
      port: 443,
      url: "https://test.api.stoka.space/v1/store",
    },
    challenge: { body: "{}" },
    accepted: { scheme: "exact" },
  };
  it("a well-formed request, the host normalised", () => {
    const r = readSignRequest(good);
    expect(r.ok && r.value.host).toBe("test.api.stoka.space");
  });
  const broken: [string, (b: typeof good) => unknown][] = [
    ["not an object", () => "x"],
    ["no request", (b) => ({ ...b, request: undefined })],
    ["no challenge", (b) => ({ ...b, challenge: undefined })],
    ["a bad id", (b) => ({ ...b, request: { ...b.request, payment_id: "a b" } })],
    [
      "a request id posing as `stoka-proxy pay`'s",
      (b) => ({ ...b, request: { ...b.request, request_id: "pay-command:x" } }),
    ],
    ["a lower-case method", (b) => ({ ...b, request: { ...b.request, method: "post" } })],
    ["a port out of range", (b) => ({ ...b, request: { ...b.request, port: 70000 } })],
    ["a file: URL", (b) => ({ ...b, request: { ...b.request, url: "file:///etc/passwd" } })],
    ["a body that is not a string", (b) => ({ ...b, challenge: { body: 1 } })],
    ["no chosen requirement", (b) => ({ ...b, accepted: undefined })],
  ];
  it.each(broken)("%s is refused", (_, make) => {
    expect(readSignRequest(make(good)).ok).toBe(false);
  });
});

describe("decide: a keyless sidecar needs no local budget (the signer's budgets govern)", () => {
  const ASSET = "CBIELTK6YBZJU5UP2WWQEUCYKLPU6AUNZ2BQ4WWFEIE3USCIHMXQDAMA";
  const PAYEE = Keypair.random().publicKey();
  const parsed = parseChallenge(
    {},
    JSON.stringify({
      x402Version: 2,
      accepts: [
        {
          scheme: "exact",
          network: "stellar:testnet",
          asset: ASSET,
          payTo: PAYEE,
          maxAmountRequired: "1400",
          maxTimeoutSeconds: 120,
          extra: { areFeesSponsored: true },
        },
      ],
    }),
  );
  if (!parsed.ok) throw new Error(parsed.reason);
  const base = {
    challenge: parsed.challenge,
    host: "test.api.stoka.space",
    payees: [PAYEE],
    terms: { network: "stellar:testnet", asset: ASSET, minTimeoutSeconds: 10, maxTimeoutSeconds: 600 },
    signer: { kind: "remote" },
  };
  const capped: Budget = { name: "cap", match: {}, perRequestMax: 1000n, limits: [] };
  const cases: [string, string, boolean | undefined, Budget[]][] = [
    ["no budget, local signer", "no_budget", undefined, []],
    ["no budget, remote signer", "pay", true, []],
    ["a local cap still applies to a remote signer", "price_above_cap", true, [capped]],
  ];
  it.each(cases)("%s → %s", (_, expected, budgetsAtSigner, budgets) => {
    const d = decide({ ...base, budgets, ...(budgetsAtSigner ? { budgetsAtSigner } : {}) });
    expect(d.kind === "pay" ? "pay" : d.code).toBe(expected);
  });
});

describe("config: a keyless sidecar holds no key; the signer role needs one", () => {
  const seed = Keypair.random().secret();
  const remote = (extra: Record<string, unknown> = {}) => ({
    wallet: { remote_signer: { url: "https://signer.stoka.svc:8443", token_file: tokenFile, ...extra } },
  });
  const load = (file: unknown, env: NodeJS.ProcessEnv = {}) =>
    resolveConfig(configFileSchema.parse(file), "(test)", env);
  const refused = (file: unknown, env: NodeJS.ProcessEnv, pattern: RegExp) => {
    let error: unknown;
    try {
      load(file, env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StokaProxyError);
    expect((error as StokaProxyError).message).toMatch(pattern);
    expect((error as StokaProxyError).message).not.toContain(seed);
    expect((error as StokaProxyError).message).not.toContain("a-pod-token");
  };

  it("a remote signer alone: loaded, token read, no secret", () => {
    const c = load(remote());
    expect(c.wallet.secret).toBeUndefined();
    expect(c.wallet.remoteSigner?.token).toBe("a-pod-token-long-enough-0123");
    expect(c.wallet.remoteSigner?.timeoutMs).toBe(15_000);
  });
  it("a seed beside it is refused", () => refused(remote(), { STELLAR_SECRET: seed }, /holds no key/));
  it("a payment command beside it is refused", () =>
    refused(remote(), { X_PAYMENT_CMD: "sign" }, /payment command/));
  it("plain http is refused (the token would travel in clear)", () =>
    refused(
      { wallet: { remote_signer: { url: "http://signer:8443", token_file: tokenFile } } },
      {},
      /https/,
    ));
  it("a short token is refused", () =>
    refused(
      { wallet: { remote_signer: { url: "https://signer:8443", token_file: shortToken } } },
      {},
      /at least 16/,
    ));
  it("a shared PostgreSQL ledger is refused (each payment would be booked twice)", () =>
    refused(
      { ...remote(), payment_store: { kind: "postgres", url: "postgres://x@db/x" } },
      {},
      /own ledger/,
    ));
  it("half a client certificate is refused", () =>
    refused(remote({ client_cert_file: tokenFile }), {}, /both client_cert_file/));

  const signer = (tokens: unknown[]) => ({
    signer: { listen: "127.0.0.1:8443", tls: { cert_file: tokenFile, key_file: tokenFile }, tokens },
  });
  it("a signer role without a wallet is refused", () =>
    refused(signer([{ client: "a", token_file: tokenFile }]), {}, /signs with this process's wallet/));
  it("a signer role: tokens kept as SHA-256, default wallet-auth routes", () => {
    const c = load(
      signer([
        { client: "a", token_file: tokenFile },
        { client: "b", token_sha256: "b".repeat(64) },
      ]),
      {
        STELLAR_SECRET: seed,
      },
    );
    expect(c.signer?.tokens.map((t) => t.client)).toEqual(["a", "b"]);
    expect(c.signer?.tokens[0]?.tokenSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(c.signer?.tokens)).not.toContain("a-pod-token");
    expect(c.signer?.tokens[0]?.walletAuthRoutes).toEqual(["delete", "usage", "profile", "queue_ack"]);
  });
  it("the same token twice is refused", () =>
    refused(
      signer([
        { client: "a", token_sha256: "c".repeat(64) },
        { client: "b", token_sha256: "c".repeat(64) },
      ]),
      { STELLAR_SECRET: seed },
      /listed twice/,
    ));
  it("a token with both a file and a hash does not parse", () => {
    expect(() =>
      configFileSchema.parse(signer([{ client: "a", token_file: tokenFile, token_sha256: "d".repeat(64) }])),
    ).toThrow(/exactly one/);
  });
});
