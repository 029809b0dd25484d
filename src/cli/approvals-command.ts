import { readFileSync } from "node:fs";
import { formatUsdc } from "../stellar/amount.js";
import { jsonLine, table } from "./output.js";
import type { Out } from "./output.js";

/**
 * `stoka-proxy approvals [list|approve ID|deny ID]` (docs/operations.md, Approvals): talks to
 * a running proxy's admin listener, with the admin token as a Bearer token. The token comes
 * from `--token-file` or STOKA_PROXY_ADMIN_TOKEN, never from the command line (it would show
 * in `ps` and the shell's history). Exit codes: 0 done, 1 refused or unreachable.
 */
export interface ApprovalsOptions {
  admin?: string | undefined;
  tokenFile?: string | undefined;
  json: boolean;
  reason?: string | undefined;
}

export const DEFAULT_ADMIN_URL = "http://127.0.0.1:9402";

interface PendingJson {
  id: string;
  amount: string;
  route: string;
  client: string;
  method: string;
  host: string;
  path: string;
  budgets: string[];
  reasons: string[];
  deadline: string;
}

function tokenOf(o: ApprovalsOptions, env: NodeJS.ProcessEnv): string | { error: string } {
  if (o.tokenFile !== undefined) {
    try {
      const t = readFileSync(o.tokenFile, "utf8").trim();
      if (t !== "") return t;
      return { error: `the token file ${o.tokenFile} is empty` };
    } catch (e) {
      return { error: `cannot read the token file: ${(e as NodeJS.ErrnoException).code ?? "error"}` };
    }
  }
  const t = env.STOKA_PROXY_ADMIN_TOKEN?.trim();
  return t ? t : { error: "no admin token: pass --token-file FILE or set STOKA_PROXY_ADMIN_TOKEN" };
}

export async function approvalsCommand(
  action: "list" | "approve" | "deny",
  id: string | undefined,
  o: ApprovalsOptions,
  env: NodeJS.ProcessEnv,
  out: Out,
  err: Out,
): Promise<number> {
  const token = tokenOf(o, env);
  if (typeof token !== "string") {
    err(`stoka-proxy approvals: ${token.error}\n`);
    return 1;
  }
  const base = (o.admin ?? env.STOKA_PROXY_ADMIN_URL ?? DEFAULT_ADMIN_URL).replace(/\/+$/, "");
  const path = action === "list" ? "/approvals" : `/approvals/${encodeURIComponent(id ?? "")}/${action}`;
  let status: number;
  let body: Record<string, unknown>;
  try {
    const r = await fetch(`${base}${path}`, {
      method: action === "list" ? "GET" : "POST",
      headers: {
        authorization: `Bearer ${token}`,
        ...(action === "list" ? {} : { "content-type": "application/json" }),
      },
      ...(action === "list" ? {} : { body: JSON.stringify({ reason: o.reason ?? "" }) }),
      signal: AbortSignal.timeout(10_000),
    });
    status = r.status;
    body = (await r.json().catch(() => ({}))) as Record<string, unknown>;
  } catch (e) {
    err(
      `stoka-proxy approvals: cannot reach the admin listener at ${base}: ${(e as Error).message} (pass --admin URL)\n`,
    );
    return 1;
  }
  if (status !== 200) {
    if (o.json) out(jsonLine({ status, ...body }));
    const hint = typeof body.hint === "string" && body.hint ? ` (${body.hint})` : "";
    err(`stoka-proxy approvals: ${status} ${String(body.error ?? "refused")}${hint}\n`);
    return 1;
  }
  if (o.json) {
    out(jsonLine(body));
    return 0;
  }
  if (action !== "list") {
    out(`${String(body.decision)} ${id ?? ""}\n`);
    return 0;
  }
  const pending = (body.pending ?? []) as PendingJson[];
  if (pending.length === 0) {
    out("no payments wait for approval on this proxy\n");
    return 0;
  }
  const now = Date.now();
  out(
    table(
      ["id", "amount", "left", "client", "route", "request", "why"],
      pending.map((p) => [
        p.id,
        formatUsdc(BigInt(p.amount)),
        `${Math.max(0, Math.round((Date.parse(p.deadline) - now) / 1000))} s`,
        p.client,
        p.route,
        `${p.method} ${p.host}${p.path}`,
        p.reasons.join("; "),
      ]),
      [1, 2],
    ),
  );
  return 0;
}
