import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { promisify } from "node:util";
import { Keypair } from "@stellar/stellar-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curl } from "../support/clients.js";
import {
  envPairs,
  execForm,
  healthcheck,
  inContext,
  parseDockerfile,
  parseDockerignore,
  splitFlags,
} from "../support/dockerfile.js";
import type { Instruction, Stage } from "../support/dockerfile.js";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { freePort } from "../support/redis-server.js";
import { requireTool } from "../support/tools.js";

/**
 * No Docker engine runs here, so this replays the Dockerfile itself: it reads the file, copies
 * into a clean folder exactly what the build stage COPYs (through .dockerignore, as the
 * builder's context), runs the stage's npm steps (npm ci, build, prune), copies what the
 * runtime stage takes from it, and starts the result with the image's ENTRYPOINT, CMD, ENV and
 * USER, each image path (/app, /data, /config, /run/secrets) mapped to a temp folder. The
 * Debian packages the stages install (tini, ca-certificates; the compilers) come from this
 * machine, which has the same ones (test/setup.sh).
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);
const dockerfile = parseDockerfile(readFileSync(join(ROOT, "Dockerfile"), "utf8"));
const ignore = parseDockerignore(readFileSync(join(ROOT, ".dockerignore"), "utf8"));
const [buildStage, runtimeStage] = dockerfile.stages as [Stage, Stage];

/** RUN steps that only set up the base system: replayed as far as they touch image paths. */
const SYSTEM_STEP = /^(apt-get |rm -rf \/var\/lib\/apt\/lists\/\*$|groupadd |useradd |mkdir |chown |chmod )/;

/** One stage's own files under a folder: the image paths it creates are mapped there. */
class StageFs {
  workdir = "/";
  readonly owned = new Set<string>();
  /** Image path → the user:group a `chown` gave it. */
  readonly owners = new Map<string, string>();
  /** Users and groups `useradd --uid` / `groupadd --gid` made, by name. */
  readonly ids = new Map<string, number>();
  constructor(readonly root: string) {}
  abs(p: string): string {
    return posix.resolve(this.workdir, p);
  }
  host(imagePath: string): string {
    return join(this.root, this.abs(imagePath));
  }
  own(imagePath: string): string {
    this.owned.add(this.abs(imagePath));
    return this.host(imagePath);
  }
  /** An argument or env value: image paths this stage owns become host paths. */
  map(value: string): string {
    for (const p of this.owned) if (value === p || value.startsWith(`${p}/`)) return join(this.root, value);
    return value;
  }
}

/** Every file of the context under `rel` that .dockerignore lets through. */
function contextFiles(rel: string): string[] {
  const full = join(ROOT, rel);
  if (!existsSync(full)) throw new Error(`COPY ${rel}: not in the build context`);
  if (!statSync(full).isDirectory()) return inContext(ignore, rel) ? [rel] : [];
  return (readdirSync(full, { recursive: true }) as string[])
    .map((f) => posix.join(rel, f))
    .filter((f) => statSync(join(ROOT, f)).isFile() && inContext(ignore, f));
}

/** COPY from the build context: a folder's contents go into the destination folder. */
function copyFromContext(stage: StageFs, words: string[], sent: string[]): void {
  const dest = words[words.length - 1] as string;
  const sources = words.slice(0, -1);
  for (const src of sources) {
    const files = contextFiles(src);
    if (files.length === 0) throw new Error(`COPY ${src}: .dockerignore keeps it out of the context`);
    const isDir = statSync(join(ROOT, src)).isDirectory();
    for (const f of files) {
      const target = isDir
        ? posix.join(stage.abs(dest), posix.relative(src, f))
        : dest.endsWith("/") || sources.length > 1
          ? posix.join(stage.abs(dest), posix.basename(f))
          : stage.abs(dest);
      mkdirSync(dirname(stage.host(target)), { recursive: true });
      copyFileSync(join(ROOT, f), stage.host(target));
      sent.push(f);
    }
    stage.own(isDir ? dest : dest.endsWith("/") ? posix.join(dest, posix.basename(src)) : dest);
  }
}

/** The system part of a RUN: mkdir and chmod on image paths are done, the rest is this host's. */
function replaySystemStep(stage: StageFs, part: string): void {
  const words = part.split(/\s+/);
  if (words[0] === "mkdir")
    for (const p of words.slice(1).filter((w) => !w.startsWith("-"))) {
      mkdirSync(stage.own(p), { recursive: true });
    }
  if (words[0] === "chmod") chmodSync(stage.host(words[2] as string), parseInt(words[1] as string, 8));
  if (words[0] === "chown") stage.owners.set(stage.abs(words[2] as string), words[1] as string);
  if (words[0] === "useradd" || words[0] === "groupadd") {
    const id = words.indexOf(words[0] === "useradd" ? "--uid" : "--gid");
    stage.ids.set(`${words[0]}:${words[words.length - 1] ?? ""}`, Number(words[id + 1]));
  }
}

interface Image {
  env: Record<string, string>;
  user: string;
  volumes: string[];
  exposed: number[];
  entrypoint: string[];
  cmd: string[];
  health: ReturnType<typeof healthcheck>;
  runs: string[];
}

async function replay(
  stageDef: Stage,
  stage: StageFs,
  stages: Record<string, StageFs>,
  sent: string[],
): Promise<Image> {
  const image: Image = {
    env: {},
    user: "0",
    volumes: [],
    exposed: [],
    entrypoint: [],
    cmd: [],
    health: { options: {}, command: [] },
    runs: [],
  };
  for (const ins of stageDef.instructions as Instruction[]) {
    const where = `Dockerfile line ${ins.line}: ${ins.keyword} ${ins.args}`;
    switch (ins.keyword) {
      case "WORKDIR":
        stage.workdir = stage.abs(ins.args);
        mkdirSync(stage.own(ins.args), { recursive: true });
        break;
      case "COPY": {
        const { flags, words } = splitFlags(ins.args);
        if (flags.from === undefined) {
          copyFromContext(stage, words, sent);
          break;
        }
        const from = stages[flags.from];
        if (!from) throw new Error(`${where}: no stage ${flags.from}`);
        const [src, dest] = words as [string, string];
        cpSync(from.host(src), stage.host(dest), { recursive: true });
        stage.own(dest);
        break;
      }
      case "RUN": {
        image.runs.push(ins.args);
        const parts = ins.args.split("&&").map((p) => p.trim());
        if (parts.every((p) => p.startsWith("npm "))) {
          // The npm cache of this machine is reused; nothing else differs from the image.
          await run("sh", ["-c", ins.args], {
            cwd: stage.host(stage.workdir),
            env: { ...process.env, npm_config_prefer_offline: "true", npm_config_update_notifier: "false" },
            maxBuffer: 64 * 1024 * 1024,
          });
        } else if (parts.every((p) => SYSTEM_STEP.test(p))) {
          for (const p of parts) replaySystemStep(stage, p);
        } else {
          throw new Error(`${where}: a step this test does not know how to replay`);
        }
        break;
      }
      case "ENV":
        Object.assign(image.env, envPairs(ins.args));
        break;
      case "USER":
        image.user = ins.args;
        break;
      case "VOLUME":
        for (const v of execForm(ins.args) ?? ins.args.split(/\s+/)) {
          image.volumes.push(v);
          mkdirSync(stage.own(v), { recursive: true });
        }
        break;
      case "EXPOSE":
        image.exposed.push(...ins.args.split(/\s+/).map((p) => Number(p.split("/")[0])));
        break;
      case "HEALTHCHECK":
        image.health = healthcheck(ins.args);
        break;
      case "ENTRYPOINT":
        image.entrypoint = execForm(ins.args) ?? [];
        break;
      case "CMD":
        image.cmd = execForm(ins.args) ?? [];
        break;
      default:
        throw new Error(`${where}: an instruction this test does not know`);
    }
  }
  return image;
}

const tmp = mkdtempSync(join(tmpdir(), "stoka-image-"));
const build = new StageFs(join(tmp, "build"));
const runtime = new StageFs(join(tmp, "runtime"));
const sent: string[] = [];
let image: Image;
/** The image's user when the tests run as root (as CI does); otherwise this user. */
let ids: { uid: number; gid: number } | undefined;
const asUser = () => (ids ? { uid: ids.uid, gid: ids.gid } : {});
const ports = { proxy: 0, admin: 0 };
let env: Record<string, string> = {};
let child: ChildProcess | undefined;
let output = "";
let origin: Origin;
const seed = Keypair.random().secret();

beforeAll(async () => {
  requireTool("tini");
  chmodSync(tmp, 0o755); // the image's user walks into it
  await replay(buildStage, build, {}, sent);
  image = await replay(runtimeStage, runtime, { [buildStage.name ?? "0"]: build }, sent);
  const [uid, gid] = image.user.split(":").map(Number) as [number, number];
  if (process.getuid?.() === 0) {
    ids = { uid, gid: gid ?? uid };
    for (const [p, owner] of runtime.owners) {
      const [user, group] = owner.split(":") as [string, string | undefined];
      const u = runtime.ids.get(`useradd:${user}`) ?? Number(user);
      const g = runtime.ids.get(`groupadd:${group ?? user}`) ?? Number(group ?? user);
      chownSync(runtime.host(p), u, g);
    }
  }
  // What `docker run` adds: the config at /config, the seed as a secret file, the listeners on
  // free loopback ports (the healthcheck reads STOKA_PROXY_ADMIN_LISTEN).
  mkdirSync(runtime.own("/config"), { recursive: true });
  copyFileSync(join(ROOT, "config/host.yaml"), runtime.host("/config/stoka-proxy.yaml"));
  mkdirSync(runtime.own("/run/secrets"), { recursive: true });
  writeFileSync(runtime.host("/run/secrets/stellar-seed"), `${seed}\n`, { mode: 0o400 });
  if (ids) chownSync(runtime.host("/run/secrets/stellar-seed"), ids.uid, ids.gid);
  ports.proxy = await freePort();
  ports.admin = await freePort();
  env = {
    ...Object.fromEntries(Object.entries(image.env).map(([k, v]) => [k, runtime.map(v)])),
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: "/nonexistent",
    STELLAR_SECRET_FILE: runtime.map("/run/secrets/stellar-seed"),
    STOKA_PROXY_LISTEN: `127.0.0.1:${ports.proxy}`,
    STOKA_PROXY_ADMIN_LISTEN: `127.0.0.1:${ports.admin}`,
    // Not the image's: outside a PID namespace tini cannot be PID 1; as a subreaper it reaps
    // orphans as PID 1 would (and does not warn that it is not).
    TINI_SUBREAPER: "1",
  };
  origin = await startOrigin();
}, 600_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child?.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }
  await origin?.close();
  // Two copies of the production node_modules (build and runtime stages): on a loaded 2-core CI
  // machine removing them took longer than the default 30 s hook timeout.
  await rm(tmp, { recursive: true, force: true, maxRetries: 3 });
}, 300_000);

/** The image's ENTRYPOINT with `args` in place of CMD, as `docker run IMAGE args…`. */
function entrypoint(args: string[]): [string, string[]] {
  const argv = [...image.entrypoint, ...args].map((a) => runtime.map(a));
  return [argv[0] as string, argv.slice(1)];
}

async function runInImage(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, rest] = entrypoint(args);
  return run(cmd, rest, { cwd: runtime.host(runtime.workdir), env, ...asUser() }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof e.code === "number" ? e.code : -1,
      stdout: e.stdout ?? "",
      stderr: e.stderr ?? "",
    }),
  );
}

describe("the Dockerfile", () => {
  it("builds on the Node major the tests run on, compiles only in the build stage", () => {
    const major = process.versions.node.split(".")[0];
    for (const s of dockerfile.stages) expect(s.image).toMatch(new RegExp(`^node:${major}-`));
    expect(image.runs.join(" ")).not.toMatch(/\bg\+\+|\bmake\b|python3/);
    expect(buildStage.instructions.map((i) => i.args).join("\n")).toMatch(/python3 make g\+\+/);
  });

  it("runs as a numeric non-root user, with /data as a volume and both ports exposed", () => {
    const [uid] = image.user.split(":").map(Number);
    expect(uid).toBeGreaterThan(0);
    expect(image.volumes).toContain("/data");
    expect(image.env.STOKA_PROXY_DATA_DIR).toBe("/data");
    expect(image.env.STOKA_PROXY_CONFIG).toBe("/config/stoka-proxy.yaml");
    expect(image.exposed).toEqual(expect.arrayContaining([8402, 9402]));
    expect(image.entrypoint.slice(0, 2)).toEqual(["/usr/bin/tini", "--"]);
    expect([...image.entrypoint.slice(2), ...image.cmd]).toEqual(["node", "/app/dist/cli/main.js", "start"]);
    expect(image.health.command.slice(0, 2)).toEqual(["node", "-e"]);
  });

  it("puts no secret in a layer: the context is an allow-list and holds no key or seed", () => {
    for (const path of ["data/stoka-proxy.db", ".env", "seed", "ca.key", "node_modules/x/y.js", "dist/a.js"])
      expect(inContext(ignore, path), path).toBe(false);
    expect(sent.length).toBeGreaterThan(50);
    for (const f of sent) {
      const text = readFileSync(join(ROOT, f), "utf8");
      expect(text, f).not.toMatch(/-----BEGIN [A-Z ]*PRIVATE KEY-----/);
      expect(text, f).not.toMatch(/\bS[A-Z2-7]{55}\b/);
    }
    for (const [k, v] of Object.entries(image.env))
      expect(`${k}=${v}`).not.toMatch(/SECRET|TOKEN|PASSWORD|DATABASE_URL|_KEY/);
  });

  it("ships production dependencies only, with the native addon built", () => {
    const modules = runtime.host("/app/node_modules");
    expect(existsSync(join(modules, "better-sqlite3/build/Release/better_sqlite3.node"))).toBe(true);
    for (const dev of ["vitest", "typescript", "eslint", "prettier", "tsx", "kubernetes-models"])
      expect(existsSync(join(modules, dev)), dev).toBe(false);
    expect(existsSync(runtime.host("/app/dist/cli/main.js"))).toBe(true);
    expect(existsSync(runtime.host("/app/src"))).toBe(false);
  });
});

describe("the image, started as `docker run` would", () => {
  it("`check-config` reads the mounted config through STOKA_PROXY_CONFIG", async () => {
    const r = await runInImage(["check-config"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /configuration is valid: stellar:testnet, 1 paid host\(s\), 1 budget\(s\), signer: local key/,
    );
  });

  it("starts: /healthz answers 200 and the HEALTHCHECK command passes; it pays from /data", async () => {
    const [cmd, rest] = entrypoint(image.cmd);
    child = spawn(cmd, rest, {
      cwd: runtime.host(runtime.workdir),
      env,
      stdio: ["ignore", "pipe", "pipe"],
      ...asUser(),
    });
    child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
    const admin = `http://127.0.0.1:${ports.admin}`;
    const deadline = Date.now() + 30_000;
    let health = 0;
    while (Date.now() < deadline && child.exitCode === null) {
      health = await fetch(`${admin}/healthz`).then(
        (r) => r.status,
        () => 0,
      );
      if (health === 200) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(health, output).toBe(200);
    expect((await fetch(`${admin}/readyz`)).status, output).toBe(200);

    const [hc, ...hcArgs] = image.health.command.map((a) => runtime.map(a));
    await expect(
      run(hc as string, hcArgs, { cwd: runtime.host(runtime.workdir), env, ...asUser(), timeout: 10_000 }),
    ).resolves.toBeDefined();

    // The proxy forwards (a host that is not paid), and its state is in the volume.
    const res = await curl({
      proxy: `http://127.0.0.1:${ports.proxy}`,
      method: "GET",
      url: `${origin.url}/hi`,
    });
    expect(res.status).toBe(200);
    expect(origin.received.map((r) => r.url)).toContain("/hi");
    expect(existsSync(runtime.host("/data/stoka-proxy.db"))).toBe(true);
    expect(statSync(runtime.host("/data/ca/stoka-proxy-ca.key")).mode & 0o777).toBe(0o600);
    if (ids) expect(statSync(runtime.host("/data/stoka-proxy.db")).uid).toBe(ids.uid);
    expect(output).toMatch(/stoka-proxy listening/);
    expect(output).not.toContain(seed);
  }, 60_000);

  it("exits 0 on SIGTERM (tini passes it on; the proxy's handlers close and exit)", async () => {
    const proc = child as ChildProcess;
    expect(proc.exitCode).toBeNull();
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      proc.once("exit", (code, signal) => resolve([code, signal])),
    );
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    const [code, signal] = await exited;
    clearTimeout(timer);
    expect({ code, signal }, output).toEqual({ code: 0, signal: null });
    // The health check now fails: nothing answers.
    const [hc, ...hcArgs] = image.health.command.map((a) => runtime.map(a));
    await expect(
      run(hc as string, hcArgs, { cwd: runtime.host(runtime.workdir), env, ...asUser(), timeout: 10_000 }),
    ).rejects.toMatchObject({ code: 1 });
  }, 30_000);
});
