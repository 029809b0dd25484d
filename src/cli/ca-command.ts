import type { ProxyConfig } from "../config/config.js";
import { caFilesOf, loadOrCreateCa, trustInstructions, unconstrainedCaWarning } from "../tls/ca-store.js";
import type { Out } from "./output.js";

/**
 * `stoka-proxy ca [--pem] [--name-constraints]`: the interception CA (generated on first use),
 * with absolute paths so the printed commands work from any folder. `--pem` prints the bare
 * certificate for `> ca.pem`. An existing CA is never replaced.
 */
export async function caCommand(
  config: ProxyConfig,
  pem: boolean,
  nameConstraints: boolean,
  out: Out,
  err: Out,
): Promise<number> {
  const files = caFilesOf(config, nameConstraints);
  const { ca, certPath, created, constrained } = await loadOrCreateCa(config.dataDir, files);
  if (files.nameConstraints && !constrained) err(`warning: ${unconstrainedCaWarning(certPath)}\n`);
  if (created)
    err(
      `generated a new interception CA at ${certPath}${constrained ? ` (name-constrained to ${files.nameConstraints?.join(", ")})` : ""}\n`,
    );
  out(pem ? `${ca.certPem.trimEnd()}\n` : trustInstructions(certPath, ca.certPem));
  return 0;
}
