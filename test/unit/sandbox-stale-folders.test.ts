import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  markSandboxFolder,
  processAlive,
  sweepStaleSandboxFolders,
} from "../../src/sandbox/stale-folders.js";

/** A PID that belonged to a process that has exited (a short-lived child, waited for). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
    encoding: "utf8",
  });
  return Number(r.stdout);
}

const bases: string[] = [];
afterEach(() => {
  for (const b of bases.splice(0)) rmSync(b, { recursive: true, force: true });
});

function base(): string {
  const b = mkdtempSync(join(tmpdir(), "stale-sweep-"));
  bases.push(b);
  return b;
}

describe("folders of sandboxes that were killed", () => {
  it("removes a folder whose owner process is gone, keeps a live owner's, an unmarked one and other names", () => {
    const b = base();
    const dead = join(b, "stoka-sandbox-dead");
    const live = join(b, "stoka-sandbox-live");
    const unmarked = join(b, "stoka-sandbox-old");
    const other = join(b, "not-a-sandbox");
    for (const d of [dead, live, unmarked, other]) mkdirSync(join(d, "ca"), { recursive: true });
    writeFileSync(join(dead, "ca", "sandbox-ca.key"), "key");
    const gone = deadPid();
    expect(processAlive(gone)).toBe(false);
    markSandboxFolder(dead, gone);
    markSandboxFolder(live, process.ppid);
    markSandboxFolder(other, gone);

    expect(sweepStaleSandboxFolders(b)).toEqual([dead]);
    expect(existsSync(dead)).toBe(false);
    for (const d of [live, unmarked, other]) expect(existsSync(d)).toBe(true);
  });

  it("never removes the calling process's own folder, and ignores an owner file that is not a PID", () => {
    const b = base();
    const own = join(b, "stoka-sandbox-own");
    const junk = join(b, "stoka-sandbox-junk");
    mkdirSync(own);
    mkdirSync(junk);
    markSandboxFolder(own);
    writeFileSync(join(junk, "owner.pid"), "../../etc\n");
    expect(sweepStaleSandboxFolders(b, () => false)).toEqual([]);
    expect(existsSync(own)).toBe(true);
    expect(existsSync(junk)).toBe(true);
  });

  it("a base folder that does not exist sweeps nothing", () => {
    expect(sweepStaleSandboxFolders(join(tmpdir(), "no-such-folder-for-the-sweep"))).toEqual([]);
  });
});
