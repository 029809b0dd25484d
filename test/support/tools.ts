import { execFileSync } from "node:child_process";

/**
 * Fails at once, naming the install command, when a tool an end-to-end test drives is missing
 * (test/setup.sh installs them; a test must never wait for a binary that is not there).
 */
const PACKAGES: Record<string, string> = {
  go: "golang-go",
  prometheus: "prometheus",
  "redis-server": "redis-server",
  curl: "curl",
  python3: "python3",
  chromium: "chromium",
  tini: "tini",
};

export function requireTool(command: string): void {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
  } catch {
    const pkg = PACKAGES[command] ?? command;
    throw new Error(
      `\`${command}\` is not installed; run \`bash test/setup.sh\` (or: apt-get install -y ${pkg})`,
    );
  }
}
