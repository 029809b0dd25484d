/**
 * Path and host globs, as budgets, wallet-auth routes and egress rules write them: `*` matches
 * within one segment (no `/`), `**` across segments; everything else is literal. Pure.
 *
 * @example globMatches("/v1/object/*", "/v1/object/a") // true
 * @example globMatches("/v1/**", "/v1/queue/t/pop")    // true
 *
 * Not picomatch: it cannot keep these rules (test/unit/glob.test.ts pins them). Its `*` never
 * matches an empty segment; its `**` spans segments only when it is a whole segment, and then
 * also matches no segment at all; and `?`, `[…]`, `{…}`, `!` would stop being literal. For
 * deny_hosts a narrower match would let more through.
 */
function globToRegExp(glob: string): RegExp {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === "*" && glob[i + 1] === "*") {
      out += ".*";
      i++;
    } else if (ch === "*") out += "[^/]*";
    else out += ch.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

const globCache = new Map<string, RegExp>();
export function globMatches(glob: string, path: string): boolean {
  let re = globCache.get(glob);
  if (!re) {
    re = globToRegExp(glob);
    globCache.set(glob, re);
  }
  return re.test(path);
}
