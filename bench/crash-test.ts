/**
 * `npm run crash-test`: real `stoka-proxy start` processes against the sandbox, each scenario
 * a budget for exactly K payments, more demand than K, and a crash in the middle (restart,
 * kill -9, shared stores, Redis restarted empty, PostgreSQL cut, a payee asking for another
 * asset). Prints one row per scenario; exits 1 if any is over the limit or its ledger does not
 * account for the charges. Offline: loopback only, bounded in count and time.
 *
 *   npm run crash-test                       # every scenario
 *   npm run crash-test -- restart kill-9     # some of them
 *   npm run crash-test -- --k 10 --requests 40 --replicas 5
 */
import { bundleCli } from "./crash/bundle.js";
import { runCrashTest } from "./crash/run.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} needs a positive whole number`);
  args.splice(i, 2);
  return v;
};
const k = flag("k", 20);
const requests = flag("requests", 80);
const replicas = flag("replicas", 10);
const scenarios = args.length > 0 ? args : undefined;
const started = Date.now();
const log = (line: string) => process.stdout.write(`${line}\n`);
log(`crash test: budget K = ${k} payments, ${requests} requests per scenario, ${replicas} replicas`);
const run = await runCrashTest({ k, requests, replicas, cli: await bundleCli(), scenarios, log });
log("");
log(run.table);
log("");
log(run.details);
log("");
log(
  `${run.ok ? "PASS" : "FAIL"}: ${run.results.filter((r) => r.problems.length === 0).length} of ${run.results.length} scenarios hold, in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);
process.exit(run.ok ? 0 : 1);
