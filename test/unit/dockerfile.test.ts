import { describe, expect, it } from "vitest";
import {
  envPairs,
  execForm,
  healthcheck,
  inContext,
  parseDockerfile,
  parseDockerignore,
  splitFlags,
} from "../support/dockerfile.js";

/** The Dockerfile reader test/e2e/container.test.ts replays the image with. */
describe("parseDockerfile", () => {
  const file = [
    "# comment",
    "ARG BASE=node:20-bookworm-slim",
    "FROM ${BASE} AS build",
    "RUN apt-get update \\",
    "  # a comment inside a continuation is dropped",
    " && apt-get install -y make",
    "COPY a b ./",
    "",
    "FROM $BASE",
    'CMD ["start"]',
  ].join("\n");

  it("reads stages, ARG defaults, continuations and comments", () => {
    const d = parseDockerfile(file);
    expect(d.globalArgs).toEqual({ BASE: "node:20-bookworm-slim" });
    expect(d.stages.map((s) => [s.image, s.name])).toEqual([
      ["node:20-bookworm-slim", "build"],
      ["node:20-bookworm-slim", undefined],
    ]);
    expect(d.stages[0]?.instructions.map((i) => [i.keyword, i.args, i.line])).toEqual([
      ["RUN", "apt-get update  && apt-get install -y make", 4],
      ["COPY", "a b ./", 7],
    ]);
    expect(d.stages[1]?.instructions[0]?.args).toBe('["start"]');
  });

  it("refuses an ARG without a default in FROM, and instructions before FROM", () => {
    expect(() => parseDockerfile("ARG X\nFROM $X")).toThrow(/no default/);
    expect(() => parseDockerfile("RUN true\nFROM x")).toThrow(/before FROM/);
  });
});

describe("instruction arguments", () => {
  it.each([
    ['["a", "b"]', ["a", "b"]],
    ["a b", undefined],
  ])("execForm(%s)", (args, want) => {
    expect(execForm(args)).toEqual(want);
  });

  it("splits --flags from words", () => {
    expect(splitFlags("--from=build --chown=1:1 /app/dist ./dist")).toEqual({
      flags: { from: "build", chown: "1:1" },
      words: ["/app/dist", "./dist"],
    });
  });

  it("reads ENV pairs, quoted or not", () => {
    expect(envPairs('A=1  B=/x/y C="two words"')).toEqual({ A: "1", B: "/x/y", C: "two words" });
  });

  it("reads HEALTHCHECK options and its exec-form command", () => {
    expect(healthcheck('--interval=5s --retries=3 CMD ["node", "-e", "x"]')).toEqual({
      options: { interval: "5s", retries: "3" },
      command: ["node", "-e", "x"],
    });
    expect(healthcheck("CMD true").command).toEqual(["/bin/sh", "-c", "true"]);
  });
});

describe(".dockerignore", () => {
  const rules = parseDockerignore("# allow-list\n*\n!package.json\n!src/\nsrc/**/*.secret\n");
  it.each([
    ["package.json", true],
    ["src/a/b.ts", true],
    ["src", true],
    ["src/a/b.secret", false],
    ["data/stoka-proxy.db", false],
    [".env", false],
    ["node_modules/x/index.js", false],
    ["package-lock.json", false],
  ])("%s sent: %s", (path, sent) => {
    expect(inContext(rules, path)).toBe(sent);
  });
});
