import { readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * A sandbox's temporary folder is removed when it stops (Ctrl-C, SIGTERM); one killed with
 * SIGKILL (or by a crash) leaves it behind, its CA key included. Each folder names the process
 * that made it (`owner.pid`); the next sandbox removes the folders whose process is gone
 * (docs/operations.md, The sandbox). A folder without that file, or another user's, is left
 * alone; a reused PID only keeps a folder longer.
 */
export const SANDBOX_PREFIX = "stoka-sandbox-";
const OWNER_FILE = "owner.pid";
/** Bounds the sweep on a /tmp that holds very many entries. */
const MAX_ENTRIES = 10_000;

export function markSandboxFolder(root: string, pid = process.pid): void {
  writeFileSync(join(root, OWNER_FILE), `${pid}\n`, { mode: 0o600 });
}

/** Whether a process with this PID exists (signal 0 checks without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes the sandbox folders under `base` whose owner process is gone; returns them. */
export function sweepStaleSandboxFolders(
  base: string,
  alive: (pid: number) => boolean = processAlive,
): string[] {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return [];
  }
  const uid = process.getuid?.();
  const removed: string[] = [];
  for (const name of names.slice(0, MAX_ENTRIES)) {
    if (!name.startsWith(SANDBOX_PREFIX)) continue;
    const dir = join(base, name);
    try {
      const st = statSync(dir);
      if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) continue;
      const pid = Number(readFileSync(join(dir, OWNER_FILE), "utf8").trim());
      if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue;
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // No owner file (an older sandbox's, or not ours), or gone meanwhile: left as it is.
    }
  }
  return removed;
}
