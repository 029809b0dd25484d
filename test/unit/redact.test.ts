import { randomBytes } from "node:crypto";
import { Keypair } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import { isLoopbackHost, openListenerProblem } from "../../src/config/open-listener.js";
import {
  describeValue,
  isSecretParamName,
  redactQuery,
  redactUrl,
  scrubSecrets,
  secretKind,
} from "../../src/secrets/redact.js";

/** Secret-looking values out of error text and the ledger; who may listen beyond loopback. */
const seed = () => Keypair.random().secret();
const token = () => randomBytes(24).toString("base64url");

describe("secretKind", () => {
  it.each([
    ["a Stellar seed", seed(), "stellar_seed"],
    ["a seed with spaces around it", ` ${seed()}\n`, "stellar_seed"],
    ["a seed inside other text", `127.0.0.1:${seed()}`, "stellar_seed"],
    ["a base64url token", token(), "token"],
    ["a random token that happens to hold no digit", "hQzKtwLpXbRmVnYcJdGsFeAuWoTiPkNr", "token"],
    ["a Bearer token", `Bearer ${token()}`, "token"],
    ["a hex secret", randomBytes(20).toString("hex"), "token"],
    ["a well-known prefix", `sk_live_${"a".repeat(12)}`, "token"],
    ["a JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIz", "token"],
    ["a G-address (public)", Keypair.random().publicKey(), null],
    ["test", "test", null],
    ["a listen address", "0.0.0.0:8402", null],
    ["a URL", "https://test.api.stoka.space/v1", null],
    ["a file name", "my-report-2026-final.txt", null],
    ["a UUID", "0b7c6f2e-8d53-4c1a-9a57-2f0d3e4b5a69", null],
    ["a number", "7", null],
  ] as const)("%s", (_name, value, kind) => {
    expect(secretKind(value)).toBe(kind);
  });
});

describe("describeValue and scrubSecrets", () => {
  it("quotes a harmless value, describes a secret one without showing it", () => {
    expect(describeValue("tset")).toBe('"tset"');
    const s = seed();
    expect(describeValue(s)).toMatch(/Stellar secret seed .*STELLAR_SECRET or wallet\.secret_file/);
    expect(describeValue(s)).not.toContain(s);
    const t = token();
    expect(describeValue(t)).toMatch(/token or secret/);
    expect(describeValue(t)).not.toContain(t);
    expect(describeValue("x".repeat(300))).toBe("a value of 300 characters (not shown)");
  });

  it("scrubs seeds and tokens out of free text, and leaves paths readable", () => {
    const s = seed();
    const t = token();
    const text = scrubSecrets(`cannot read ${s}: ENOENT, open '/tmp/stoka-Xy12ab/${t}' and /etc/x.pem`);
    expect(text).not.toContain(s);
    expect(text).not.toContain(t);
    expect(text).toContain("/tmp/stoka-Xy12ab/");
    expect(text).toContain("/etc/x.pem");
    expect(scrubSecrets("budgets.0.limits.day: expected host:port")).toBe(
      "budgets.0.limits.day: expected host:port",
    );
  });
});

describe("URLs in the ledger", () => {
  it.each([
    ["api_key", true],
    ["API_KEY", true],
    ["apiKey", true],
    ["x-api-key", true],
    ["key", true],
    ["access_token", true],
    ["refresh-token", true],
    ["client_secret", true],
    ["password", true],
    ["auth", true],
    ["Authorization", true],
    ["X-Amz-Signature", true],
    ["X-Amz-Credential", true],
    ["sig", true],
    ["sessionId", true],
    ["days", false],
    ["keyword", false],
    ["monkey", false],
    ["limit", false],
    ["design", false],
  ] as const)("parameter name %s is secret: %s", (name, secret) => {
    expect(isSecretParamName(name)).toBe(secret);
  });

  it.each([
    ["api_key=abc&days=7", "api_key=REDACTED&days=7"],
    ["days=7&Token=abc", "days=7&Token=REDACTED"],
    ["days=7", "days=7"],
    ["q=a%20b&x=1+2", "q=a%20b&x=1+2"],
    ["flag&days=", "flag&days="],
    ["api%5Fkey=abc", "api%5Fkey=REDACTED"],
  ])("redactQuery(%s)", (query, out) => {
    expect(redactQuery(query)).toBe(out);
  });

  it("redacts any value shaped like a seed or a long random token, whatever its name", () => {
    const s = seed();
    const t = token();
    expect(redactQuery(`wallet=${s}&x=${t}&n=2`)).toBe("wallet=REDACTED&x=REDACTED&n=2");
    expect(redactQuery(`w=${encodeURIComponent(` ${s}`)}`)).toBe("w=REDACTED");
    expect(redactQuery(s)).toBe("REDACTED");
  });

  it("keeps origin and path, drops user info and fragment, redacts the query", () => {
    expect(redactUrl("https://h.example:8443/v1/me/usage?api_key=abc&days=7#frag")).toBe(
      "https://h.example:8443/v1/me/usage?api_key=REDACTED&days=7",
    );
    expect(redactUrl("http://user:pass@h/v1/store")).toBe("http://h/v1/store");
    expect(redactUrl("http://h/v1/store")).toBe("http://h/v1/store");
    const s = seed();
    expect(redactUrl(`http://h/v1/retrieve/${s}`)).toBe("http://h/v1/retrieve/REDACTED");
    expect(redactUrl("/v1/x?token=abc")).toBe("/v1/x?token=REDACTED");
    // Idempotent: redacting a stored URL again changes nothing.
    const once = redactUrl("http://h/p?api_key=abc&days=7");
    expect(redactUrl(once)).toBe(once);
  });
});

describe("listeners beyond loopback", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.8.9.10", true],
    ["localhost", true],
    ["LOCALHOST", true],
    ["::1", true],
    ["[::1]", true],
    ["0:0:0:0:0:0:0:1", true],
    ["::ffff:127.0.0.1", true],
    ["0.0.0.0", false],
    ["::", false],
    ["10.0.0.5", false],
    ["192.168.1.2", false],
    ["::ffff:10.0.0.1", false],
    ["proxy.internal", false],
    ["128.0.0.1", false],
  ] as const)("%s is loopback: %s", (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });

  it.each([
    ["0.0.0.0", 0, false, true],
    ["0.0.0.0", 1, false, false],
    ["0.0.0.0", 0, true, false],
    ["127.0.0.1", 0, false, false],
  ] as const)("%s with %d clients, allow_anonymous %s: refused %s", (host, clients, allow, refused) => {
    expect(openListenerProblem(host, clients, allow) !== null).toBe(refused);
  });
});
