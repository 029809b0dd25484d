import { describe, expect, it } from "vitest";
import { globMatches } from "../../src/parsing/glob.js";

/**
 * The glob rules budgets, wallet-auth routes and egress host patterns rely on, including the
 * edges where a general-purpose glob library (picomatch) would answer differently: `*` takes
 * an empty segment, `**` spans anywhere (also inside a segment) but never invents a segment,
 * and every other character is literal.
 */
describe("globMatches", () => {
  it.each([
    ["/v1/retrieve/*", "/v1/retrieve/a", true],
    ["/v1/retrieve/*", "/v1/retrieve/a/b", false],
    ["/v1/retrieve/*", "/v1/retrieve/", true],
    ["/v1/**", "/v1/", true],
    ["/v1/**", "/v1", false],
    ["/v1/**", "/v1/queue/t/pop", true],
    ["/a/**/b", "/a/x/y/b", true],
    ["/a/**/b", "/a/b", false],
    ["/a**", "/a/x/y", true],
    ["/a/**b", "/a/x/b", true],
    ["*", "", true],
    ["*", "a/b", false],
    ["/v1/*/pop", "/v1/.hidden/pop", true],
    ["/q?x", "/q?x", true],
    ["/q?x", "/qax", false],
    ["/[ab]", "/a", false],
    ["/[ab]", "/[ab]", true],
    ["/{a,b}", "/a", false],
    ["/{a,b}", "/{a,b}", true],
    ["!x", "!x", true],
    ["/+(a)", "/+(a)", true],
    ["/v1/sto.e", "/v1/store", false],
    // Host patterns, labels as segments (egress.ts turns dots into slashes).
    ["*/evil/example", "api/evil/example", true],
    ["*/evil/example", "evil/example", false],
    ["*/evil/example", "a/b/evil/example", false],
    ["**/evil/example", "a/b/evil/example", true],
    ["**/evil/example", "evil/example", false],
  ])("%s on %s → %s", (glob, path, ok) => {
    expect(globMatches(glob, path)).toBe(ok);
  });
});
