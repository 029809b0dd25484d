import { describe, expect, it } from "vitest";
import { checkAdminToken } from "../../src/observability/admin-auth.js";

/** The one token check of every admin endpoint that changes something. */
const TOKEN = "a-long-admin-token-0123456789";

describe("checkAdminToken", () => {
  it.each([
    ["the token", `Bearer ${TOKEN}`, true],
    ["any casing of Bearer, trailing blanks", `bearer ${TOKEN}  `, true],
    ["no header", undefined, false],
    ["another token", "Bearer another-token-of-another-len", false],
    ["a prefix of the token", `Bearer ${TOKEN.slice(0, -1)}`, false],
    ["the token with more after it", `Bearer ${TOKEN}x`, false],
    ["Basic instead of Bearer", `Basic ${TOKEN}`, false],
    ["two tokens", `Bearer ${TOKEN} ${TOKEN}`, false],
  ])("%s", (_name, header, ok) => {
    const r = checkAdminToken(header, TOKEN);
    expect(r.ok).toBe(ok);
    if (!r.ok) expect(r).toMatchObject({ status: 401, code: "admin_unauthorized" });
  });

  it("no token configured: 403 saying how to turn the endpoints on, whatever is sent", () => {
    for (const header of [undefined, "Bearer ", `Bearer ${TOKEN}`]) {
      const r = checkAdminToken(header, undefined);
      expect(r).toMatchObject({ ok: false, status: 403, code: "admin_disabled" });
      if (!r.ok) expect(r.hint).toMatch(/admin\.token_file.*STOKA_PROXY_ADMIN_TOKEN/);
    }
  });

  it("the answer never echoes the token", () => {
    const r = checkAdminToken("Bearer wrong-wrong-wrong-wrong-wr", TOKEN);
    expect(JSON.stringify(r)).not.toContain(TOKEN);
    expect(JSON.stringify(r)).not.toContain("wrong-wrong");
  });
});
