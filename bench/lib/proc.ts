import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * What Linux says about a process and the machine, read from /proc: CPU time (user + system,
 * all threads) and resident memory of one process, and the busy time of the whole machine (to
 * see how much CPU other processes took during a round).
 */
let ticks: number | undefined;

/** Clock ticks per second of /proc's CPU counters (USER_HZ, nearly always 100). */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** CPU seconds (utime + stime) a process has used so far; NaN once it is gone. */
export function processCpuSeconds(pid: number): number {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return Number.NaN;
  }
  return statCpuTicks(text).self / clockTicks();
}

/**
 * utime + stime (fields 14 and 15) and cutime + cstime (16 and 17, children waited for) of a
 * /proc/PID/stat line, in clock ticks. The command name (field 2) is in parentheses and may
 * hold spaces and parentheses itself, so fields are counted after the last ")".
 */
export function statCpuTicks(text: string): { self: number; children: number } {
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state).
  const n = (i: number) => Number(fields[i]);
  return { self: n(11) + n(12), children: n(13) + n(14) };
}

/** Resident set size in bytes (VmRSS); NaN once the process is gone. */
export function processRssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Busy CPU seconds of the whole machine so far (all cores; everything but idle and iowait). */
export function machineBusySeconds(): number {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const [, ...nums] = line.trim().split(/\s+/);
  const v = nums.map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - idle) / clockTicks();
}

/** CPU seconds of several processes together (a missing one counts as 0). */
export function cpuOf(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    const s = processCpuSeconds(pid);
    return sum + (Number.isNaN(s) ? 0 : s);
  }, 0);
}
