import { execFile, spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { Keypair } from "@stellar/stellar-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The newcomer's path: `stoka-proxy sandbox` prints curl commands; pasting them stores and
 * retrieves a blob, paid. Runs the real CLI as a child process.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);
// tsx by path, so the CLI also runs from a folder outside the repository (as a person's would).
const cli = [
  "--import",
  pathToFileURL(join(ROOT, "node_modules/tsx/dist/loader.mjs")).href,
  join(ROOT, "src/cli/main.ts"),
];

let child: ChildProcess;
let banner = "";
/** The admin token the sandbox is started with (made here, never printed). */
const adminToken = randomBytes(24).toString("hex");
let stderr = "";

/** A folder as a SIGKILLed sandbox leaves it: its owner process is gone. */
const staleFolder = join(tmpdir(), `stoka-sandbox-killed-${process.pid}`);

beforeAll(async () => {
  mkdirSync(join(staleFolder, "ca"), { recursive: true });
  writeFileSync(join(staleFolder, "ca", "sandbox-ca.key"), "not a real key");
  const exited = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
    encoding: "utf8",
  });
  writeFileSync(join(staleFolder, "owner.pid"), `${exited.stdout}\n`);
  child = spawn(
    process.execPath,
    [...cli, "sandbox", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, STOKA_PROXY_LOG_LEVEL: "warn", STOKA_PROXY_ADMIN_TOKEN: adminToken },
    },
  );
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sandbox did not start: ${stderr}`)), 25_000);
    child.stdout?.on("data", (c: Buffer) => {
      banner += c.toString();
      if (banner.includes("Stop with Ctrl-C")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}, 30_000);

afterAll(async () => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
});

describe("stoka-proxy sandbox", () => {
  it("prints copy-paste curl commands that store and retrieve a blob, paid", async () => {
    const commands = banner.split("\n").filter((l) => l.trim().startsWith("curl -i"));
    expect(commands.length).toBeGreaterThanOrEqual(4);
    const [storeCmd, retrieveCmd, httpsCmd, gatewayCmd] = commands.map(
      (c) => c.trim().split("   (")[0] ?? "",
    );
    const stored = (await run("sh", ["-c", storeCmd ?? ""])).stdout;
    expect(stored).toMatch(/^HTTP\/1\.1 201/);
    expect(stored).toMatch(/x-stoka-proxy-paid: 1400/i);
    expect(stored).toMatch(/x-stoka-proxy-tx: [0-9a-f]{64}/i);
    const retrieved = (await run("sh", ["-c", retrieveCmd ?? ""])).stdout;
    expect(retrieved).toMatch(/^HTTP\/1\.1 200/);
    expect(retrieved).toMatch(/x-stoka-proxy-paid: 1100/i);
    expect(retrieved.trimEnd().endsWith("hello, stoka")).toBe(true);
    const overTls = (await run("sh", ["-c", httpsCmd ?? ""])).stdout;
    expect(overTls).toMatch(/HTTP\/1\.1 200/);
    expect(overTls.trimEnd().endsWith("hello, stoka")).toBe(true);
    expect((await run("sh", ["-c", gatewayCmd ?? ""])).stdout).toMatch(/^HTTP\/1\.1 201/);
  });

  it("prints the wallet's public key and never its seed", () => {
    expect(banner).toMatch(/wallet\s+G[A-Z2-7]{55}/);
    expect(banner + stderr).not.toMatch(/(^|[^A-Z2-7])S[A-Z2-7]{55}([^A-Z2-7]|$)/);
  });

  it("serves /healthz and /readyz on the admin listener", async () => {
    const admin = /admin\s+(http:\/\/[^/\s]+)/.exec(banner)?.[1];
    expect((await fetch(`${admin}/healthz`)).status).toBe(200);
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
  });

  it("prints its folder and the exact commands that read its budget and ledger", async () => {
    const folder = /folder\s+(\S+)/.exec(banner)?.[1] ?? "";
    expect(folder).toMatch(/stoka-sandbox-/);
    expect(banner).toMatch(new RegExp(`data\\s+${folder}/data\\s+\\(ledger and budgets; removed on exit\\)`));
    // `npx stoka-proxy …`: after `npm ci && npm start` the command is not on PATH, npx finds it.
    const spendLine = banner.split("\n").find((l) => l.trim().startsWith("npx stoka-proxy spend ")) ?? "";
    const args = spendLine.trim().split(/\s+/).slice(2);
    expect(args).toEqual(["spend", "--config", `${folder}/sandbox.yaml`]);
    // The paid store of the first test shows up under the sandbox's own budget.
    const text = (await run(process.execPath, [...cli, ...args], { cwd: ROOT })).stdout;
    expect(text).toMatch(/^BUDGET\s+PERIOD\s+USED\s+LIMIT\s+RESERVED$/m);
    expect(text).toMatch(/^sandbox\s+day\s+0\.\d+ USDC\s+1 USDC\s+0 USDC$/m);
    expect(text).toMatch(/^store\s+default\s+0\.\d+ USDC\s+0\.\d+ USDC\s+0 USDC$/m);
    const json = JSON.parse(
      (await run(process.execPath, [...cli, ...args, "--json"], { cwd: ROOT })).stdout,
    ) as {
      budgets: { budget: string; limit: string }[];
    };
    expect(json.budgets).toContainEqual(expect.objectContaining({ budget: "sandbox", limit: "10000000" }));
    const verify = await run(
      process.execPath,
      [...cli, "ledger", "verify", "--config", `${folder}/sandbox.yaml`],
      {
        cwd: ROOT,
      },
    );
    expect(verify.stdout).toMatch(/^ledger OK: \d+ rows/);
    const yaml = readFileSync(`${folder}/sandbox.yaml`, "utf8");
    expect(yaml).not.toMatch(/S[A-Z2-7]{55}/);
    // The addresses this run really listens on (it asked for port 0), not the defaults.
    const proxyUrl = /proxy\s+(http:\/\/\S+)/.exec(banner)?.[1] ?? "";
    const adminUrl = /admin\s+(http:\/\/\S+)\/metrics/.exec(banner)?.[1] ?? "";
    expect(yaml).toMatch(new RegExp(`^listen: ${new URL(proxyUrl).host}$`, "m"));
    expect(yaml).toMatch(new RegExp(`^admin_listen: ${new URL(adminUrl).host}$`, "m"));
  }, 60_000);

  it("takes the admin token from STOKA_PROXY_ADMIN_TOKEN (approvals, the kill switch can be tried)", async () => {
    const adminUrl = /admin\s+(http:\/\/\S+)\/metrics/.exec(banner)?.[1] ?? "";
    const withToken = await fetch(`${adminUrl}/approvals`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(withToken.status).toBe(200);
    expect(await withToken.json()).toEqual(expect.objectContaining({ pending: [] }));
    const wrong = await fetch(`${adminUrl}/approvals`, {
      headers: { authorization: "Bearer not-the-token" },
    });
    expect(wrong.status).toBe(401);
  }, 30_000);

  it("removed the folder a killed sandbox left behind (its owner process is gone)", () => {
    expect(existsSync(staleFolder)).toBe(false);
  });

  it("removes its folder, CA key included, when it stops", async () => {
    const folder = /folder\s+(\S+)/.exec(banner)?.[1] ?? "";
    expect(existsSync(join(folder, "ca", "sandbox-ca.key"))).toBe(true);
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
    expect(existsSync(folder)).toBe(false);
  }, 30_000);
});

describe("stoka-proxy ca", () => {
  it("generates the CA on first use (key 0600), prints it and how to trust it", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "stoka-ca-"));
    const { stdout } = await run(process.execPath, [...cli, "ca"], {
      cwd: ROOT,
      env: { ...process.env, STOKA_PROXY_DATA_DIR: dataDir },
    });
    expect(stdout).toMatch(/-----BEGIN CERTIFICATE-----/);
    for (const client of [
      "curl",
      "REQUESTS_CA_BUNDLE",
      "NODE_EXTRA_CA_CERTS",
      "SSL_CERT_FILE",
      "keytool",
      "update-ca-certificates",
    ]) {
      expect(stdout).toContain(client);
    }
    expect(statSync(join(dataDir, "ca", "stoka-proxy-ca.key")).mode & 0o777).toBe(0o600);
    // The second run loads the same CA.
    const again = await run(process.execPath, [...cli, "ca"], {
      cwd: ROOT,
      env: { ...process.env, STOKA_PROXY_DATA_DIR: dataDir },
    });
    expect(again.stdout.split("-----END CERTIFICATE-----")[0]).toBe(
      stdout.split("-----END CERTIFICATE-----")[0],
    );
  });
});

describe("stoka-proxy check-config", () => {
  it("accepts a valid file and names the field of an invalid one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stoka-cli-"));
    const good = join(dir, "good.yaml");
    writeFileSync(good, "budgets: [{ name: b, limits: { day: '1 USDC' } }]\n");
    const ok = await run(process.execPath, [...cli, "check-config", "--config", good], { cwd: ROOT });
    expect(ok.stdout).toMatch(/configuration is valid: stellar:testnet, 1 paid host\(s\), 1 budget\(s\)/);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "budgets: [{ name: b, limits: { day: 'lots' } }]\n");
    const err = await run(process.execPath, [...cli, "check-config", "--config", bad], { cwd: ROOT }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((err as { code: number }).code).toBe(78);
    expect((err as { stderr: string }).stderr).toMatch(/bad\.yaml: budgets\.0\.limits\.day/);
  });

  it("names every paid_hosts entry that could never match, and accepts authorities", async () => {
    const dir = mkdtempSync(join(tmpdir(), "stoka-cli-"));
    const bad = join(dir, "paid-hosts.yaml");
    writeFileSync(
      bad,
      `paid_hosts:
  - host: ""
  - host: https://stoka.internal
  - host: stoka.internal/v1
  - host: stoka.internal:99999
  - host: stoka.internal:8443
  - host: STOKA.internal.:8443
  - host: ok.example
    upstream: https://ok.example/some/path
`,
    );
    const err = await run(process.execPath, [...cli, "check-config", "--config", bad], { cwd: ROOT }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((err as { code: number }).code).toBe(78);
    const stderr = (err as { stderr: string }).stderr;
    expect(stderr).toMatch(/paid_hosts\.0\.host: .*empty/);
    expect(stderr).toMatch(/paid_hosts\.1\.host: .*is a URL, not a host/);
    expect(stderr).toMatch(/paid_hosts\.2\.host: .*path/);
    expect(stderr).toMatch(/paid_hosts\.3\.host: .*port/);
    expect(stderr).not.toMatch(/paid_hosts\.4\.host: /);
    expect(stderr).toMatch(/paid_hosts\.5\.host: .*duplicate of paid_hosts\.4/);
    expect(stderr).toMatch(/paid_hosts\.6\.upstream: .*path/);

    const good = join(dir, "good-hosts.yaml");
    writeFileSync(
      good,
      `paid_hosts:
  - host: stoka.internal:8443
  - host: stoka.internal
    upstream: https://stoka.internal:9443
  - host: "[::1]:8443"
budgets: [{ name: b, limits: { day: '1 USDC' } }]
`,
    );
    const ok = await run(process.execPath, [...cli, "check-config", "--config", good], { cwd: ROOT });
    expect(ok.stdout).toMatch(/configuration is valid: stellar:testnet, 3 paid host\(s\)/);
  });
});

describe("an open paying proxy does not start without a word", () => {
  const dir = mkdtempSync(join(tmpdir(), "stoka-cli-open-"));
  const cfg = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const fails = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [...cli, ...args], {
      cwd: ROOT,
      timeout: 20_000, // a proxy that starts when it should not is stopped, not left running
      env: { PATH: process.env.PATH ?? "", STOKA_PROXY_DATA_DIR: dir, ...env },
    }).then(
      (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );

  it("check-config and start refuse 0.0.0.0 without client tokens, naming the field and the fix", async () => {
    const open = cfg("open.yaml", "listen: 0.0.0.0:0\nadmin_listen: 127.0.0.1:0\n");
    for (const command of ["check-config", "start"]) {
      const r = await fails([command, "--config", open]);
      expect(r.code).toBe(78);
      expect(r.stderr).toMatch(/open\.yaml: listen: "0\.0\.0\.0" is reachable from other machines/);
      expect(r.stderr).toMatch(/pay for anyone who can reach it/);
      expect(r.stderr).toMatch(/configure `clients:`.*or set `allow_anonymous: true`/);
    }
    const flag = await fails(["check-config", "--listen", "0.0.0.0:8402"]);
    expect(flag.code).toBe(78);
    expect(flag.stderr).toMatch(/--listen/);
    const sandbox = await fails(["sandbox", "--listen", "0.0.0.0:0", "--admin-listen", "127.0.0.1:0"]);
    expect(sandbox.code).toBe(78);
    expect(sandbox.stderr).toMatch(/--listen: "0\.0\.0\.0" is reachable/);
  }, 60_000);

  it("check-config accepts 0.0.0.0 with client tokens or allow_anonymous", async () => {
    const withClients = cfg(
      "clients.yaml",
      `listen: 0.0.0.0:8402\nclients: [{ name: a, token_sha256: "${"b".repeat(64)}" }]\n`,
    );
    expect((await fails(["check-config", "--config", withClients])).code).toBe(0);
    const anonymous = cfg("anonymous.yaml", "listen: 0.0.0.0:8402\nallow_anonymous: true\n");
    const open = await fails(["check-config", "--config", anonymous]);
    expect(open.code).toBe(0);
    expect(open.stderr).toMatch(/warning: .*pays for anyone who can reach it/);
  }, 30_000);

  it("start with allow_anonymous: true warns that the proxy pays for anyone who can reach it", async () => {
    const anonymous = cfg(
      "start-anonymous.yaml",
      `listen: 0.0.0.0:0\nadmin_listen: 127.0.0.1:0\nallow_anonymous: true\ntls: { intercept: false }\ndata_dir: ${join(dir, "data")}\n`,
    );
    const child = spawn(process.execPath, [...cli, "start", "--config", anonymous], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: process.env.PATH ?? "" },
    });
    let out = "";
    child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no warning:\n${out}`)), 25_000);
        const check = () => {
          if (/pays for anyone who can reach it/.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout?.on("data", check);
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`start exited with ${code}:\n${out}`));
        });
      });
      const warning = out.split("\n").find((l) => l.includes("pays for anyone"));
      expect(JSON.parse(warning ?? "{}")).toMatchObject({ level: "warn", allow_anonymous: true });
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
    }
  }, 30_000);
});

describe("config errors never print a seed", () => {
  const dir = mkdtempSync(join(tmpdir(), "stoka-cli-seed-"));
  const seed = Keypair.random().secret();
  const attempt = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    run(process.execPath, [...cli, ...args], {
      cwd: ROOT,
      timeout: 20_000, // a proxy that starts when it should not is stopped, not left running
      env: { PATH: process.env.PATH ?? "", STOKA_PROXY_DATA_DIR: dir, ...env },
    }).then(
      (ok) => ({ code: 0, out: ok.stdout + ok.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
  const yaml = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it.each([
    [
      "in STOKA_ENV",
      () => attempt(["check-config"], { STOKA_ENV: seed }),
      /STOKA_ENV: .*Stellar secret seed/,
    ],
    ["in --listen", () => attempt(["check-config", "--listen", seed]), /--listen: .*Stellar secret seed/],
    [
      "in STOKA_PROXY_LISTEN",
      () => attempt(["start"], { STOKA_PROXY_LISTEN: `${seed}:8402` }),
      /STOKA_PROXY_LISTEN: .*Stellar secret seed/,
    ],
    [
      "in a YAML field",
      () =>
        attempt([
          "check-config",
          "--config",
          yaml("amount.yaml", `budgets: [{ name: b, limits: { day: ${seed} } }]\n`),
        ]),
      /budgets\.0\.limits\.day: .*Stellar secret seed/,
    ],
    [
      "on a line of invalid YAML",
      () => attempt(["check-config", "--config", yaml("syntax.yaml", `listen: a: ${seed}\n`)]),
      /line 1, column \d+/,
    ],
    [
      "on a line with a YAML warning",
      () => attempt(["check-config", "--config", yaml("tag.yaml", `stoka_env: !x ${seed}\n`)]),
      /line 1, column \d+ \(TAG_RESOLVE_FAILED\)/,
    ],
    [
      "in wallet.secret_file",
      () => attempt(["check-config", "--config", yaml("file.yaml", `wallet: { secret_file: ${seed} }\n`)]),
      /wallet\.secret_file: cannot read a Stellar secret seed/,
    ],
  ])(
    "%s",
    async (_name, go, expected) => {
      const r = await go();
      expect(r.code).toBe(78);
      expect(r.out).toMatch(expected);
      expect(r.out).not.toContain(seed);
      expect(r.out).not.toMatch(/S[A-Z2-7]{55}/);
    },
    30_000,
  );
});

/** The CLI as a person meets it: a process, its exit code, and what went to stdout vs stderr. */
describe("the command line, for people", () => {
  const dir = mkdtempSync(join(tmpdir(), "stoka-cli-people-"));
  const home = join(dir, "home");
  const sh = (args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT) =>
    run(process.execPath, [...cli, ...args], {
      cwd,
      timeout: 20_000,
      env: { PATH: process.env.PATH ?? "", HOME: home, STOKA_PROXY_DATA_DIR: join(dir, "data"), ...env },
    }).then(
      (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );
  const yaml = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at .+:\d+:\d+/);

  it("--version prints package.json's version", async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const r = await sh([flag]);
      expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n`, stderr: "" });
    }
  }, 30_000);

  it("a mistyped flag is a usage error on stderr with a suggestion, not a stack", async () => {
    const r = await sh(["check-config", "--confg", "x.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/unknown option '--confg'/);
    expect(r.stderr).toMatch(/Did you mean --config\?/);
    expect(r.stderr).toMatch(/stoka-proxy check-config --help/);
    noStack(r.stderr);
    const cmd = await sh(["spnd"]);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toMatch(/unknown command 'spnd'/);
    expect(cmd.stderr).toMatch(/Did you mean spend\?/);
  }, 30_000);

  it("every command's --help is its own", async () => {
    const exportHelp = await sh(["ledger", "export", "--help"]);
    expect(exportHelp.code).toBe(0);
    expect(exportHelp.stdout).toMatch(/Usage: stoka-proxy ledger export/);
    expect(exportHelp.stdout).toMatch(/--format <format>.*"ndjson", "csv"/s);
    expect(exportHelp.stdout).not.toMatch(/budgets restore|--resolve/);
    const reconcileHelp = await sh(["reconcile", "--help"]);
    expect(reconcileHelp.stdout).toMatch(/--days <n>/);
    expect(reconcileHelp.stdout).not.toMatch(/--format/);
    const top = await sh(["--help"]);
    for (const c of ["start", "sandbox", "check-config", "ca", "ledger", "spend", "reconcile", "budgets"])
      expect(top.stdout).toMatch(new RegExp(`^  ${c} `, "m"));
  }, 30_000);

  it("bad option values are refused before anything runs: exit 2, on stderr only", async () => {
    const xml = await sh(["ledger", "export", "--format", "xml"]);
    expect(xml).toMatchObject({ code: 2, stdout: "" });
    expect(xml.stderr).toMatch(/'xml' is invalid.*ndjson, csv/);
    const days = await sh(["reconcile", "--days", "abc"]);
    expect(days).toMatchObject({ code: 2, stdout: "" });
    expect(days.stderr).toMatch(/'abc' is invalid\. a whole number of days from 1 to 90/);
    const since = await sh(["ledger", "export", "--since", "yesterday"]);
    expect(since).toMatchObject({ code: 2, stdout: "" });
    expect(since.stderr).toMatch(/ISO 8601/);
  }, 60_000);

  it("check-config refuses what start would refuse, naming the source", async () => {
    const loud = await sh(["check-config", "--log-level", "loud"]);
    expect(loud.code).toBe(2);
    expect(loud.stderr).toMatch(/'loud' is invalid\. Allowed choices are fatal, error, warn/);
    const loudEnv = await sh(["check-config"], { STOKA_PROXY_LOG_LEVEL: "loud" });
    expect(loudEnv.code).toBe(78);
    expect(loudEnv.stderr).toMatch(/env: STOKA_PROXY_LOG_LEVEL: must be one of/);
    const seed = await sh(["check-config"], { STELLAR_SECRET: "SABC" });
    expect(seed.code).toBe(78);
    expect(seed.stderr).toMatch(/STELLAR_SECRET: is not a valid Stellar secret seed/);
    expect(seed.stderr).not.toContain("SABC");
    for (const [flag, value] of [
      ["--listen", "localhost"],
      ["--admin-listen", "localhost"],
    ] as const) {
      const r = await sh(["check-config", flag, value]);
      expect(r.code).toBe(78);
      expect(r.stderr).toContain(`flag: ${flag}: expected host:port`);
      expect(r.stderr).not.toContain("(defaults)");
    }
    const admin = await sh(["check-config"], { STOKA_PROXY_ADMIN_LISTEN: "localhost" });
    expect(admin.stderr).toContain("env: STOKA_PROXY_ADMIN_LISTEN: expected host:port");
  }, 90_000);

  it("per_request_max: 0.05 says how to write it", async () => {
    const r = await sh([
      "check-config",
      "--config",
      yaml("cap.yaml", "budgets: [{ name: b, per_request_max: 0.05 }]\n"),
    ]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(
      /cap\.yaml: budgets\.0\.per_request_max: .*write "0\.05 USDC" \(USDC has 7 decimals: that is 500000 atomic units\)/,
    );
    expect(r.stderr).not.toMatch(/Invalid input/);
  }, 30_000);

  it("STOKA_ENV=prod with a testnet paid host or RPC is refused, naming both fields", async () => {
    const host = await sh(
      ["check-config", "--config", yaml("mix.yaml", "paid_hosts: [{ host: test.api.stoka.space }]\n")],
      { STOKA_ENV: "prod" },
    );
    expect(host.code).toBe(78);
    expect(host.stderr).toMatch(
      /env STOKA_ENV=prod .*\n.*mix\.yaml: paid_hosts\.0\.host test\.api\.stoka\.space is a testnet host/,
    );
    const rpc = await sh(["check-config"], {
      STOKA_ENV: "prod",
      SOROBAN_RPC_URL: "https://soroban-testnet.stellar.org",
    });
    expect(rpc.code).toBe(78);
    expect(rpc.stderr).toMatch(
      /env STOKA_ENV=prod[\s\S]*env SOROBAN_RPC_URL soroban-testnet\.stellar\.org is a testnet RPC/,
    );
    const prod = await sh(["check-config"], { STOKA_ENV: "prod" });
    expect(prod.code).toBe(0);
  }, 60_000);

  it("check-config --json: snake_case, and the refusal as JSON too", async () => {
    const ok = await sh(["check-config", "--json"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      valid: true,
      network: "stellar:testnet",
      admin_listen: "127.0.0.1:9402",
      paid_hosts: ["test.api.stoka.space"],
      data_dir: join(dir, "data"),
      signer: "none",
    });
    const bad = await sh(["check-config", "--json"], { STOKA_PROXY_LISTEN: "nope" });
    expect(bad.code).toBe(78);
    expect(JSON.parse(bad.stdout)).toMatchObject({ valid: false, code: "config_invalid" });
  }, 30_000);

  it("a listener whose address is taken says so, without a stack", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const r = await sh([
        "start",
        "--listen",
        `127.0.0.1:${port}`,
        "--admin-listen",
        "127.0.0.1:0",
        "--log-level",
        "warn",
      ]);
      expect(r.code).toBe(78);
      expect(r.stderr).toContain(
        `cannot listen on 127.0.0.1:${port} (the proxy): the address is already in use`,
      );
      expect(r.stderr).toMatch(/choose another address with --listen/);
      noStack(r.stderr);
    } finally {
      taken.close();
    }
  }, 30_000);

  it("start with no data folder configured uses the per-user state folder and says so; never ./data", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "stoka-cli-cwd-"));
    const state = join(dir, "xdg-state");
    const child = spawn(
      process.execPath,
      [...cli, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
      {
        cwd,
        stdio: ["ignore", "pipe", "pipe"],
        env: { PATH: process.env.PATH ?? "", HOME: home, XDG_STATE_HOME: state },
      },
    );
    let out = "";
    child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not listening:\n${out}`)), 25_000);
        child.stdout?.on("data", () => {
          if (out.includes("stoka-proxy listening")) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`start exited with ${code}:\n${out}`));
        });
      });
      const line = JSON.parse(out.split("\n").find((l) => l.includes("stoka-proxy listening")) ?? "{}") as {
        data_dir: string;
        level: string;
        time: string;
      };
      expect(line.data_dir).toBe(join(state, "stoka-proxy"));
      expect(line.level).toBe("info");
      expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(existsSync(join(state, "stoka-proxy", "stoka-proxy.db"))).toBe(true);
      expect(readdirSync(cwd)).toEqual([]);
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
    }
  }, 30_000);

  it("ca prints absolute paths from a relative data folder; --pem prints the bare certificate", async () => {
    const cwd = mkdtempSync(join(tmpdir(), "stoka-cli-ca-"));
    const full = await sh(["ca"], { STOKA_PROXY_DATA_DIR: "rel-data" }, cwd);
    expect(full.code).toBe(0);
    expect(full.stdout).toContain(`(file: ${join(cwd, "rel-data", "ca", "stoka-proxy-ca.pem")})`);
    expect(full.stdout).toContain(`curl --cacert ${join(cwd, "rel-data", "ca", "stoka-proxy-ca.pem")}`);
    const pem = await sh(["ca", "--pem"], { STOKA_PROXY_DATA_DIR: "rel-data" }, cwd);
    const file = readFileSync(join(cwd, "rel-data", "ca", "stoka-proxy-ca.pem"), "utf8");
    expect(pem.stdout).toBe(`${file.trimEnd()}\n`);
    expect(pem.stdout).toMatch(/^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
  }, 30_000);
});
