import { execFile } from "node:child_process";
import https from "node:https";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";

/**
 * Attack review of 48d9dac, area 1: sdk-http-guard.ts `useTrustStore` puts one parsed
 * SecureContext on the SDK's HTTPS agent (always, even without extra CAs; on Node's global
 * agent until 7de4204, now on axios.defaults.httpsAgent). Each scenario runs the
 * code (its sources under tsx) in a fresh Node process, so the global agent starts pristine, and talks to
 * real TLS servers on 127.0.0.1:
 *   A       leaf from CA A (given only through NODE_EXTRA_CA_CERTS)
 *   B       leaf from CA B (the SDK's extra CA: wallet.rpc_ca_files)
 *   Bwrong  leaf from CA B, but for the name wrong.test (hostname check)
 *   C       leaf from CA C (trusted by no one, unless a caller says so)
 * The SDK path is the real `rpc.Server(...).getHealth()` (the SDK's axios). Each
 * scenario is run against the new code and against the old code's behaviour (globalAgent
 * `ca` = roots + extras only when extras exist) and must give the same verdicts; the proxy's
 * other HTTPS clients (upstream client, notifier webhooks, remote signer) must not gain trust.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);

interface Srv {
  url: string;
  hits: () => number;
  close: () => void;
}

async function tlsServer(certPem: string, keyPem: string): Promise<Srv> {
  let hits = 0;
  const server = https.createServer({ cert: certPem, key: keyPem }, (req, res) => {
    hits += 1;
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      let id: unknown = 1;
      try {
        id = (JSON.parse(body) as { id?: unknown }).id ?? 1;
      } catch {
        /* a GET */
      }
      res.end(JSON.stringify({ jsonrpc: "2.0", id, result: { status: "healthy" } }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `https://127.0.0.1:${port}`, hits: () => hits, close: () => server.close() };
}

let dir: string;
const pem: Record<string, string> = {};
const srv: Record<string, Srv> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "attack-3b9-trust-"));
  const cas = {
    A: await createCertificateAuthority("attack A", 1),
    B: await createCertificateAuthority("attack B", 1),
    C: await createCertificateAuthority("attack C", 1),
  };
  for (const [k, ca] of Object.entries(cas)) {
    pem[k] = join(dir, `ca-${k}.pem`);
    writeFileSync(pem[k] as string, ca.certPem);
  }
  const leaf = async (ca: (typeof cas)["A"], names: string[]) => {
    const l = await issueLeafCertificate(ca, names);
    return tlsServer(l.certPem, l.keyPem);
  };
  srv.A = await leaf(cas.A, ["127.0.0.1"]);
  srv.B = await leaf(cas.B, ["127.0.0.1"]);
  srv.Bwrong = await leaf(cas.B, ["wrong.test"]);
  srv.C = await leaf(cas.C, ["127.0.0.1"]);
}, 60_000);

afterAll(() => {
  for (const s of Object.values(srv)) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The child: `mode` is new|old, `extras` a list of CA files for trustExtraCertificates. */
const CHILD = String.raw`
import https from "node:https";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const { mode, extras, urls, caFiles, root } = JSON.parse(process.argv[1]);
const require = createRequire(root + "/package.json");
const { rpc } = require("@stellar/stellar-sdk");
const extraPems = extras.map((f) => readFileSync(f, "utf8"));
const guard = await import(root + "/src/stellar/sdk-http-guard.ts");
if (mode === "new") {
  guard.installSdkHttpGuard({ ledgerCloseSeconds: 5, timeoutMs: 5000 });
  if (extraPems.length > 0) guard.trustExtraCertificates(extraPems);
} else {
  // 476b62c: installSdkHttpGuard left the global agent alone; trustExtraCertificates set ca.
  if (extraPems.length > 0) https.globalAgent.options.ca = [...tls.rootCertificates, ...extraPems];
}
const out = {};
const probe = async (name, fn) => {
  try { await fn(); out[name] = "ok"; }
  catch (e) { out[name] = "refused"; out[name + ":why"] = String(e?.code ?? e?.message ?? e); }
};
for (const [k, u] of Object.entries(urls)) {
  const url = k === "Bwrong" ? u : u;
  await probe("sdk:" + k, () => new rpc.Server(url + "/").getHealth());
}
const opts = https.globalAgent.options;
out.globalRejectUnauthorized = opts.rejectUnauthorized === false ? "off" : "on";
out.globalCheckServerIdentity = opts.checkServerIdentity ? "overridden" : "default";
if (mode === "new") {
  const { UpstreamClient } = await import(root + "/src/http/upstream-client.ts");
  const { httpTransport } = await import(root + "/src/operator/notify/http-post.ts");
  const { RemoteSignerClient } = await import(root + "/src/wallet/remote-signer.ts");
  const readBody = (res) => new Promise((r) => { res.resume(); res.on("end", r); });
  const upstream = new UpstreamClient({ timeoutMs: 5000, connectTimeoutMs: 5000, caPems: [readFileSync(caFiles.C, "utf8")] });
  for (const k of ["B", "C"]) {
    await probe("upstream:" + k, async () => readBody(await upstream.send({ url: new URL(urls[k] + "/x"), method: "GET", headers: {} })));
    await probe("upstream-fresh:" + k, async () => readBody(await upstream.send({ url: new URL(urls[k] + "/x"), method: "GET", headers: {}, fresh: true })));
  }
  const t = httpTransport();
  const r = await t.post({ url: urls.B + "/hook", headers: {}, body: "{}", timeoutMs: 5000, signal: new AbortController().signal });
  out["notifier:B"] = r.kind === "status" ? "ok" : "refused";
  t.close();
  const signer = new RemoteSignerClient({ url: new URL(urls.B), token: "t0ken-not-logged", caPems: [], timeoutMs: 5000 });
  await probe("remote-signer:B", () => signer.call("GET", "/signer/v1/address"));
  await probe("agent-false:B", () => new Promise((res, rej) => https.get(urls.B + "/", { agent: false }, (m) => { m.resume(); m.on("end", res); }).on("error", rej)));
}
process.stdout.write(JSON.stringify(out));
process.exit(0);
`;

async function child(
  mode: "new" | "old",
  extras: string[],
  env: Record<string, string> = {},
): Promise<Record<string, string>> {
  const urls = Object.fromEntries(Object.entries(srv).map(([k, s]) => [k, s.url]));
  const { stdout } = await run(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      CHILD,
      JSON.stringify({ mode, extras, urls, caFiles: pem, root: ROOT }),
    ],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
      timeout: 60_000,
    },
  );
  if (process.env.ATTACK_DEBUG) console.log(mode, extras.length, stdout);
  return JSON.parse(stdout) as Record<string, string>;
}

const verdicts = (r: Record<string, string>, prefix: string) =>
  Object.fromEntries(Object.entries(r).filter(([k]) => k.startsWith(prefix) && !k.endsWith(":why")));

describe("attack: the SDK's trust store (sdk-http-guard.ts useTrustStore)", () => {
  it("no extra CAs: NODE_EXTRA_CA_CERTS is honoured as before, nothing else is trusted, names are checked", async () => {
    const env = { NODE_EXTRA_CA_CERTS: pem.A as string };
    const now = await child("new", [], env);
    const before = await child("old", [], env);
    expect(verdicts(now, "sdk:")).toEqual({
      "sdk:A": "ok",
      "sdk:B": "refused",
      "sdk:Bwrong": "refused",
      "sdk:C": "refused",
    });
    expect(verdicts(now, "sdk:")).toEqual(verdicts(before, "sdk:"));
    expect(now.globalRejectUnauthorized).toBe("on");
    expect(now.globalCheckServerIdentity).toBe("default");
    // Without NODE_EXTRA_CA_CERTS, A is a stranger too.
    const bare = await child("new", []);
    expect(verdicts(bare, "sdk:")).toEqual({
      "sdk:A": "refused",
      "sdk:B": "refused",
      "sdk:Bwrong": "refused",
      "sdk:C": "refused",
    });
  }, 120_000);

  it("extra CA B: B trusted, B's cert for another name refused, C refused; same verdicts as the old code", async () => {
    const env = { NODE_EXTRA_CA_CERTS: pem.A as string };
    const now = await child("new", [pem.B as string], env);
    const before = await child("old", [pem.B as string], env);
    expect(now["sdk:B"]).toBe("ok");
    expect(now["sdk:Bwrong"]).toBe("refused");
    expect(now["sdk:Bwrong:why"]).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID|altname|Hostname/i);
    expect(now["sdk:C"]).toBe("refused");
    // NODE_EXTRA_CA_CERTS with extras: dropped (roots + extras only), exactly as 476b62c did.
    expect(verdicts(now, "sdk:")).toEqual(verdicts(before, "sdk:"));
  }, 120_000);

  it("the proxy's other HTTPS clients gain no trust from the SDK's store", async () => {
    const now = await child("new", [pem.B as string]);
    expect(now["sdk:B"]).toBe("ok"); // the SDK does trust B ...
    // ... the upstream client (upstream.ca_files = C) does not, pooled or fresh, and still trusts C.
    expect(now["upstream:B"]).toBe("refused");
    expect(now["upstream-fresh:B"]).toBe("refused");
    expect(now["upstream:C"]).toBe("ok");
    expect(now["upstream-fresh:C"]).toBe("ok");
    // Webhooks, the remote signer, and a one-off `agent: false` request neither.
    expect(now["notifier:B"]).toBe("refused");
    expect(now["remote-signer:B"]).toBe("refused");
    expect(now["agent-false:B"]).toBe("refused");
  }, 120_000);

  it("no source file sends HTTPS on the global agent besides the SDK (its options override a caller's ca/cert/key)", () => {
    // Node's Agent.addRequest merges { ...requestOptions, ...agent.options }, and tls.connect
    // uses options.secureContext before ca/cert/key: any https.request() on the global agent
    // now gets the SDK's store, whatever `ca` it passes. Guard that none does.
    const files: string[] = [];
    const walk = (d: string) => {
      for (const f of readdirSync(d)) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith(".ts")) files.push(p);
      }
    };
    walk(join(ROOT, "src"));
    const offenders: string[] = [];
    for (const f of files) {
      const text = readFileSync(f, "utf8");
      for (const m of text.matchAll(/https\.(request|get)\(([\s\S]{0,600}?)\n\s*\)/g)) {
        if (!/agent\s*:/.test(m[2] ?? "")) offenders.push(`${f}: ${m[0].slice(0, 80)}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
