/**
 * Reads a Dockerfile and a .dockerignore the way the builder does, for the parts this
 * repository's files use (so test/e2e/container.test.ts can replay the image's steps without a
 * Docker engine): continuation lines, comments, ARG defaults in FROM, stages, the shell and
 * JSON (exec) forms, `--flag=value` options, and .dockerignore patterns where the last match
 * wins and a pattern that matches a parent folder covers everything in it.
 */
export interface Instruction {
  keyword: string;
  /** The text after the keyword, continuation lines joined. */
  args: string;
  line: number;
}

export interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] ?? "";
    if (/^\s*(#|$)/.test(first)) continue;
    const line = i + 1;
    let joined = first;
    // A trailing backslash continues the instruction; comment lines inside it are dropped.
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      joined = joined.replace(/\\\s*$/, "");
      i += 1;
      while (/^\s*#/.test(lines[i] ?? "") && i + 1 < lines.length) i += 1;
      joined += ` ${(lines[i] ?? "").trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(joined);
    if (!m) throw new Error(`Dockerfile line ${line}: not an instruction: ${first}`);
    instructions.push({ keyword: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line });
  }
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`Dockerfile line ${ins.line}: FROM ${ins.args}`);
      const image = (m[1] as string).replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, name: string) => {
        const v = globalArgs[name];
        if (v === undefined) throw new Error(`Dockerfile line ${ins.line}: ARG ${name} has no default`);
        return v;
      });
      stages.push({ image, name: m[2], instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== "ARG") throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before FROM`);
      const [name, value] = ins.args.split("=", 2);
      if (value !== undefined) globalArgs[name as string] = value;
    } else {
      (stages[stages.length - 1] as Stage).instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

/** The JSON (exec) form `["a", "b"]`, or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith("[")) return undefined;
  const parsed = JSON.parse(args) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string"))
    throw new Error(`not a JSON array of strings: ${args}`);
  return parsed as string[];
}

/** `--from=build --chown=a:b src… dest` → the flags and the words after them. */
export function splitFlags(args: string): { flags: Record<string, string>; words: string[] } {
  const flags: Record<string, string> = {};
  const words = args.split(/\s+/).filter(Boolean);
  while (words[0]?.startsWith("--")) {
    const [k, v = ""] = (words.shift() as string).slice(2).split("=", 2);
    flags[k as string] = v;
  }
  return { flags, words };
}

/** `A=1 B=2` (ENV, key=value form) → { A: "1", B: "2" }. */
export function envPairs(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const raw = m[2] as string;
    out[m[1] as string] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
  }
  return out;
}

/** HEALTHCHECK [--opt=v …] CMD … → the options and the command. */
export function healthcheck(args: string): { options: Record<string, string>; command: string[] } {
  const m = /^((?:--\S+\s+)*)CMD\s+(.*)$/.exec(args);
  if (!m) throw new Error(`HEALTHCHECK without CMD: ${args}`);
  const { flags } = splitFlags(m[1] as string);
  const command = execForm(m[2] as string) ?? ["/bin/sh", "-c", m[2] as string];
  return { options: flags, command };
}

/** One .dockerignore pattern as a regular expression over slash-separated relative paths. */
function patternRegex(pattern: string): RegExp {
  const p = pattern.replace(/^\/+/, "").replace(/\/+$/, "");
  let re = "";
  for (let i = 0; i < p.length; i++) {
    const c = p[i] as string;
    if (c === "*" && p[i + 1] === "*") {
      re += ".*";
      i += 1;
      if (p[i + 1] === "/") i += 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

export function parseDockerignore(text: string): { exclude: boolean; re: RegExp; pattern: string }[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const exclude = !l.startsWith("!");
      const pattern = exclude ? l : l.slice(1);
      return { exclude, re: patternRegex(pattern), pattern };
    });
}

/** Whether a path of the build context is sent to the builder. */
export function inContext(rules: ReturnType<typeof parseDockerignore>, path: string): boolean {
  const parts = path.split("/");
  const selfAndParents = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  let included = true;
  for (const rule of rules) if (selfAndParents.some((p) => rule.re.test(p))) included = !rule.exclude;
  return included;
}
