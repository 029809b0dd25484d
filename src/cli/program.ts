import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { loadConfig, LOG_LEVELS } from "../config/load.js";
import type { ConfigFlags } from "../config/load.js";
import type { ProxyConfig } from "../config/config.js";
import { createLogger } from "../observability/logger.js";
import { VERSION } from "../observability/version.js";
import { budgetsReset, budgetsRestore, budgetsStatus } from "./budget-commands.js";
import { approvalsCommand } from "./approvals-command.js";
import type { ApprovalsOptions } from "./approvals-command.js";
import { caCommand } from "./ca-command.js";
import { checkConfigCommand } from "./check-config.js";
import { eventsCommand } from "./events-command.js";
import { ledgerExport, ledgerVerify, reconcileCommand, spend } from "./ledger-commands.js";
import { progressLine } from "./output.js";
import type { Out } from "./output.js";

/**
 * The command line (docs/operations.md, The command line): one commander program, each
 * command with its own help and options, validated before anything runs. The actions call the
 * command functions; `start` and `sandbox` are passed in by main.ts, which owns the process
 * (signals, exit). Exit codes: 0 ok, 2 usage (an unknown flag, a bad option value), 78
 * configuration refused, 1 anything else; `ledger verify` 3 (tampered), `reconcile` 4 (mismatch).
 */
export const EXIT_USAGE = 2;

/** What every config-reading command receives: the flags resolved as ConfigFlags. */
interface ConfigOptionValues {
  config?: string;
  dataDir?: string;
  listen?: string;
  adminListen?: string;
  logLevel?: string;
  rpcUrl?: string;
  upstream?: string;
  allowAnonymous?: boolean;
}

export interface LongRunning {
  /** Runs until a signal; never returns an exit code (main.ts exits on the signal). */
  start(flags: ConfigFlags): Promise<void>;
  sandbox(flags: ConfigFlags): Promise<void>;
}

export interface CliIo {
  out: Out;
  err: Out;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

function toFlags(o: ConfigOptionValues): ConfigFlags {
  const flags: ConfigFlags = {};
  if (o.config) flags.config = o.config;
  if (o.dataDir) flags.dataDir = o.dataDir;
  if (o.listen) flags.listen = o.listen;
  if (o.adminListen) flags.adminListen = o.adminListen;
  if (o.logLevel) flags.logLevel = o.logLevel;
  if (o.rpcUrl) flags.rpcUrl = o.rpcUrl;
  if (o.upstream) flags.upstream = o.upstream;
  if (o.allowAnonymous) flags.allowAnonymous = true;
  return flags;
}

const logLevelOption = () =>
  new Option("--log-level <level>", "log level (or STOKA_PROXY_LOG_LEVEL)").choices(LOG_LEVELS);

/** --config and --data-dir: every command that reads the configuration or the data folder. */
function withFileOptions(cmd: Command): Command {
  return cmd
    .option("-c, --config <file>", "YAML or JSON config file (or STOKA_PROXY_CONFIG)")
    .option(
      "--data-dir <dir>",
      "data folder: ledger, budgets, CA (or STOKA_PROXY_DATA_DIR; default ~/.local/state/stoka-proxy)",
    );
}

/** The listener and upstream flags of the commands that run or check a proxy. */
function withProxyOptions(cmd: Command): Command {
  return withFileOptions(cmd)
    .option("--listen <host:port>", "proxy listener (default 127.0.0.1:8402)")
    .option(
      "--admin-listen <host:port>",
      "admin listener for /metrics, /healthz, /readyz (default 127.0.0.1:9402)",
    )
    .addOption(logLevelOption())
    .option("--rpc-url <url>", "Soroban RPC (or SOROBAN_RPC_URL)")
    .option("--upstream <url>", "gateway upstream (default: STOKA_BASE_URL / STOKA_ENV)")
    .option("--allow-anonymous", "listen beyond loopback without client tokens (allow_anonymous: true)");
}

function positiveDays(value: string): number {
  if (!/^[0-9]{1,3}$/.test(value) || Number(value) < 1 || Number(value) > 90)
    throw new InvalidArgumentError("a whole number of days from 1 to 90.");
  return Number(value);
}

function isoDate(value: string): string {
  if (Number.isNaN(Date.parse(value)))
    throw new InvalidArgumentError("an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z.");
  return value;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Builds the program. `setCode` receives each action's exit code (commander's parseAsync
 * resolves to the program, not to a code).
 */
export function buildProgram(io: CliIo, run: LongRunning, setCode: (code: number) => void): Command {
  const config = (o: ConfigOptionValues): ProxyConfig => loadConfig(io.env, toFlags(o));
  const program = new Command("stoka-proxy")
    .description(
      "A forward HTTP proxy that pays stoka's HTTP 402 challenges in USDC on Stellar, within budgets.",
    )
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help (also: stoka-proxy <command> --help)")
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride()
    .addHelpText(
      "after",
      "\nWith no command, `start` runs. Exit codes: 0 ok, 2 usage, 78 configuration refused, 1 other errors.",
    );

  withProxyOptions(program.command("start").description("run the proxy (the default command)")).action(
    (o: ConfigOptionValues) => run.start(toFlags(o)),
  );

  program
    .command("sandbox")
    .description("run the proxy in front of a local stoka emulator with a test wallet (no real money)")
    .option("--listen <host:port>", "proxy listener (default 127.0.0.1:8402)")
    .option("--admin-listen <host:port>", "admin listener (default 127.0.0.1:9402)")
    .addOption(logLevelOption())
    .option(
      "--data-dir <dir>",
      "keep the sandbox's ledger here (default: a temporary folder, removed on exit)",
    )
    .option("--allow-anonymous", "listen beyond loopback without client tokens")
    .action((o: ConfigOptionValues) => run.sandbox(toFlags(o)));

  withProxyOptions(program.command("check-config"))
    .description("validate the configuration as `start` would, and exit (78 if refused)")
    .option("--json", "print the result as JSON")
    .action(async (o: ConfigOptionValues & { json?: boolean }) =>
      setCode(await checkConfigCommand(io.env, toFlags(o), o.json === true, io.out, io.err)),
    );

  withFileOptions(program.command("ca"))
    .description("print the interception CA certificate and how to trust it (generated on first use)")
    .option("--pem", "print only the certificate (PEM), e.g. to redirect into a file")
    .option(
      "--name-constraints",
      "when generating the CA, restrict it to the paid hosts (X.509 name constraints; tls.ca_name_constraints)",
    )
    .action(async (o: ConfigOptionValues & { pem?: boolean; nameConstraints?: boolean }) =>
      setCode(await caCommand(config(o), o.pem === true, o.nameConstraints === true, io.out, io.err)),
    );

  const ledger = program.command("ledger").description("the hash-chained payment ledger: verify, export");
  withFileOptions(ledger.command("verify"))
    .description("check the ledger's hash chain (exit 3 if tampered)")
    .option("--json", "print the result as JSON")
    .action(async (o: ConfigOptionValues & { json?: boolean }) =>
      setCode(await ledgerVerify(config(o), io.out, o.json === true)),
    );
  withFileOptions(ledger.command("export"))
    .description("print every ledger row, oldest first")
    .addOption(new Option("--format <format>", "output format").choices(["ndjson", "csv"]).default("ndjson"))
    .option("--since <date>", "only rows from this ISO 8601 date or time on", isoDate)
    .action(async (o: ConfigOptionValues & { format: string; since?: string }) =>
      setCode(await ledgerExport(config(o), o.format, o.since, io.out, progressLine(io.stderr))),
    );

  withFileOptions(program.command("spend"))
    .description("spend per budget and per route/client for the current periods")
    .option("--json", "print as JSON (amounts in atomic units, 7 decimals)")
    .action(async (o: ConfigOptionValues & { json?: boolean }) =>
      setCode(await spend(config(o), o.json === true, io.out)),
    );

  withFileOptions(program.command("reconcile"))
    .description("compare the ledger with stoka's /v1/me/usage, per UTC day (exit 4 on a mismatch)")
    .option("--days <n>", "how many days back, 1 to 90 (default: reconcile.days, 2)", positiveDays)
    .option("--resolve", "settle or reject indeterminate payments when a day's numbers leave no doubt")
    .option("--json", "print as JSON (amounts in atomic units)")
    .addOption(logLevelOption())
    .action(async (o: ConfigOptionValues & { days?: number; resolve?: boolean; json?: boolean }) => {
      const c = config(o);
      setCode(
        await reconcileCommand(
          c,
          createLogger(c.logLevel, process.stderr),
          o.days ?? c.reconcile.days,
          o.resolve === true,
          o.json === true,
          io.out,
          progressLine(io.stderr),
        ),
      );
    });

  withFileOptions(program.command("events"))
    .description("the stored security events (refused terms, 407/401, egress denials), newest last")
    .option("--since <iso-date>", "only events from this time on")
    .option("--code <code>", "only this event code")
    .option("--limit <n>", "at most this many (default 1000)")
    .option("--json", "print as JSON")
    .action(
      async (o: ConfigOptionValues & { since?: string; code?: string; limit?: string; json?: boolean }) =>
        setCode(
          await eventsCommand(
            config(o),
            { since: o.since, code: o.code, limit: o.limit, json: o.json === true },
            io.out,
            io.err,
          ),
        ),
    );

  const approvals = program
    .command("approvals")
    .description("payments waiting for a person's approval on a running proxy: list, approve, deny");
  const withAdmin = (cmd: Command): Command =>
    cmd
      .option(
        "--admin <url>",
        "the proxy's admin listener (or STOKA_PROXY_ADMIN_URL; default http://127.0.0.1:9402)",
      )
      .option("--token-file <file>", "a file holding the admin token (or STOKA_PROXY_ADMIN_TOKEN)")
      .option("--json", "print as JSON");
  type AdminFlags = Omit<ApprovalsOptions, "json"> & { json?: boolean };
  const decideWith = (action: "list" | "approve" | "deny") => async (idOrFlags: unknown, maybe?: unknown) => {
    const id = typeof idOrFlags === "string" ? idOrFlags : undefined;
    const f = (typeof idOrFlags === "string" ? maybe : idOrFlags) as AdminFlags;
    setCode(await approvalsCommand(action, id, { ...f, json: f.json === true }, io.env, io.out, io.err));
  };
  withAdmin(approvals.command("list", { isDefault: true }))
    .description("the payments waiting on this proxy (the default)")
    .action(decideWith("list"));
  withAdmin(approvals.command("approve <id>"))
    .description("approve a waiting payment: it is signed and sent")
    .option("--reason <text>", "why, for the log")
    .action(decideWith("approve"));
  withAdmin(approvals.command("deny <id>"))
    .description("deny a waiting payment: 402 approval_denied, its budget is released")
    .option("--reason <text>", "why, for the log and the app's answer")
    .action(decideWith("deny"));

  const budgets = program
    .command("budgets")
    .description("the Redis budget store's epoch: status, restore, reset");
  withFileOptions(budgets.command("status"))
    .description("the epoch: ok, lost (and why), or none yet (exit 1 if lost)")
    .option("--json", "print as JSON")
    .action(async (o: ConfigOptionValues & { json?: boolean }) =>
      setCode(await budgetsStatus(config(o), o.json === true, io.out)),
    );
  withFileOptions(budgets.command("restore"))
    .description("rebuild lost Redis budget counters from the ledgers and write a new epoch")
    .option(
      "--ledger <file>",
      "a replica's stoka-proxy.db, once per replica (default: this data folder's)",
      collect,
      [] as string[],
    )
    .option("--json", "print as JSON")
    .action(async (o: ConfigOptionValues & { ledger: string[]; json?: boolean }) =>
      setCode(await budgetsRestore(config(o), o.ledger, o.json === true, io.out)),
    );
  withFileOptions(budgets.command("reset"))
    .description("start every Redis budget from zero with a new epoch")
    .option("--yes", "really reset (without it nothing changes)")
    .action(async (o: ConfigOptionValues & { yes?: boolean }) =>
      setCode(await budgetsReset(config(o), o.yes === true, io.out)),
    );
  // After a usage error, point at the help of the command that was mistyped.
  const hintHelp = (cmd: Command, path: string): void => {
    cmd.showHelpAfterError(`(see: ${path} --help)`);
    for (const sub of cmd.commands) hintHelp(sub, `${path} ${sub.name()}`);
  };
  hintHelp(program, "stoka-proxy");
  return program;
}

/** `stoka-proxy` alone, or with flags only, means `start`. */
export function withDefaultCommand(argv: string[]): string[] {
  const first = argv[0];
  if (first === undefined) return ["start"];
  const programFlags = ["-h", "--help", "-V", "--version"];
  return first.startsWith("-") && !programFlags.includes(first) ? ["start", ...argv] : argv;
}

/**
 * Runs the command line; resolves to the exit code, or to -1 when a long-running command
 * (start, sandbox) keeps the process alive.
 */
export async function runCli(argv: string[], io: CliIo, run: LongRunning): Promise<number> {
  let code = -1;
  const program = buildProgram(io, run, (c) => (code = c));
  try {
    await program.parseAsync(withDefaultCommand(argv), { from: "user" });
  } catch (e) {
    // Commander has already written its message (to stderr) or the help/version (to stdout).
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USAGE;
    throw e;
  }
  return code;
}
