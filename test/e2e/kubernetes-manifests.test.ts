import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { promisify } from "node:util";
import { Keypair } from "@stellar/stellar-sdk";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import { Agent, request } from "node:https";
import { createCertificateAuthority, issueLeafCertificate } from "../../src/tls/certificates.js";
import type { CertificateAuthority, PemPair } from "../../src/tls/certificates.js";
import { curl } from "../support/clients.js";
import { envPairs, parseDockerfile } from "../support/dockerfile.js";
import { startOrigin } from "../support/origin.js";
import type { Origin } from "../support/origin.js";
import { createTestDatabase } from "../support/postgres.js";
import type { TestDatabase } from "../support/postgres.js";
import { freePort } from "../support/redis-server.js";
import { requireTool } from "../support/tools.js";

/**
 * Every object in every file under deploy/kubernetes/ is checked against the Kubernetes
 * schemas (kubernetes-models and its Prometheus Operator models: `validate()`, and their
 * TypeScript types for fields the schemas do not know, as `kubectl --validate=strict` would);
 * the configs the ConfigMaps hold are config/sidecar.yaml and config/gateway.yaml; each proxy
 * container's files and environment are laid out as the pod would see them (Secrets replaced
 * with generated values) and `stoka-proxy check-config` passes; the sidecar and the gateway
 * start from that layout, answer their probes, and the client example's token gets through
 * the gateway.
 */
const ROOT = new URL("../..", import.meta.url).pathname;
const run = promisify(execFile);
const CLI = ["--import", "tsx", join(ROOT, "src/cli/main.ts")];

type Json = Record<string, unknown>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Json;
  data?: Record<string, string>;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  restartPolicy?: string;
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Json;
}
interface Probe {
  httpGet: { path: string; port: string | number };
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: { key: string; path: string }[] };
  secret?: { secretName: string; defaultMode?: number; items?: { key: string; path: string }[] };
  emptyDir?: Json;
  persistentVolumeClaim?: { claimName: string };
}
interface PodSpec {
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
  terminationGracePeriodSeconds?: number;
  securityContext?: Json;
  topologySpreadConstraints?: Json[];
  affinity?: Json;
}

/** Each manifest file: its text and its objects, read as kubectl reads YAML (1.1: 0440 is octal). */
const MANIFESTS = (readdirSync(join(ROOT, "deploy/kubernetes"), { recursive: true }) as string[])
  .filter((f) => /\.ya?ml$/.test(f))
  .sort()
  .map((f) => {
    const text = readFileSync(join(ROOT, "deploy/kubernetes", f), "utf8");
    const docs = parseAllDocuments(text, { version: "1.1" });
    const objects = (Array.isArray(docs) ? docs : [docs]).flatMap((d) => {
      if (d.errors.length > 0) throw new Error(`deploy/kubernetes/${f}: ${d.errors[0]?.message ?? ""}`);
      const o = d.toJS({ maxAliasCount: 100 }) as K8sObject | null;
      return o ? [o] : [];
    });
    return { file: `deploy/kubernetes/${f}`, text, objects };
  });
const ALL = MANIFESTS.flatMap((m) => m.objects.map((o) => ({ ...m, o })));

/** Where each apiVersion's models live. */
const MODELS: Record<string, string> = {
  v1: "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "policy/v1": "kubernetes-models/policy/v1",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

const one = (kind: string, name: string): K8sObject => {
  const found = ALL.filter((x) => x.o.kind === kind && x.o.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return (found[0] as { o: K8sObject }).o;
};
const podSpec = (d: K8sObject) => (d.spec as { template: { spec: PodSpec } }).template.spec;
const podLabels = (d: K8sObject) =>
  (d.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);
/** The proxy's own containers: the image, run with its entrypoint (not a shell step). */
const proxyContainers = (spec: PodSpec) =>
  [...(spec.initContainers ?? []), ...spec.containers].filter(
    (c) => c.image.startsWith("stoka-proxy:") && c.command === undefined,
  );
/** The ConfigMap's config file the container reads (STOKA_PROXY_CONFIG). */
function mountedConfig(d: K8sObject, c: Container): Json {
  const path = c.env?.find((e) => e.name === "STOKA_PROXY_CONFIG")?.value ?? IMAGE_ENV.STOKA_PROXY_CONFIG;
  const mount = c.volumeMounts?.find((m) => path?.startsWith(`${m.mountPath}/`));
  const volume = podSpec(d).volumes?.find((v) => v.name === mount?.name);
  const cm = one("ConfigMap", volume?.configMap?.name ?? "");
  const item = volume?.configMap?.items?.find((i) => `${mount?.mountPath}/${i.path}` === path);
  return parse(cm.data?.[item?.key ?? ""] ?? "") as Json;
}

/** The image's ENV, from the Dockerfile (the last stage). */
const IMAGE_ENV: Record<string, string> = Object.assign(
  {},
  ...(parseDockerfile(readFileSync(join(ROOT, "Dockerfile"), "utf8"))
    .stages.at(-1)
    ?.instructions.filter((i) => i.keyword === "ENV")
    .map((i) => envPairs(i.args)) ?? []),
) as Record<string, string>;

describe("every manifest object against the Kubernetes schemas", () => {
  it("finds the manifests", () => {
    expect(MANIFESTS.map((m) => m.file)).toEqual([
      "deploy/kubernetes/gateway/client-team-a.yaml",
      "deploy/kubernetes/gateway/stoka-proxy-gateway.yaml",
      "deploy/kubernetes/keyless/orders-app.yaml",
      "deploy/kubernetes/keyless/stoka-proxy-signer.yaml",
      "deploy/kubernetes/sidecar/billing-app.yaml",
    ]);
    expect(ALL.length).toBeGreaterThanOrEqual(12);
  });

  it.each(ALL.map((x) => [`${x.file}: ${x.o.kind} ${x.o.metadata.name}`, x.o] as const))(
    "%s validates",
    async (_, o) => {
      const module = MODELS[o.apiVersion];
      expect(module, `no model for ${o.apiVersion}`).toBeDefined();
      const models = (await import(`${module}/${o.kind}`)) as Record<
        string,
        new (data: unknown) => { validate(): void }
      >;
      const Model = models[o.kind];
      expect(Model, `no model for ${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new (Model as new (data: unknown) => { validate(): void })(o).validate()).not.toThrow();
    },
  );

  /** Type-checks objects against the models' interfaces: an unknown field is an error. */
  function strictErrors(objects: K8sObject[]): string[] {
    const file = join(ROOT, "test", "__kubernetes_strict__.ts");
    const source = objects
      .map(
        (o, i) =>
          `import type { I${o.kind} as T${i} } from "${MODELS[o.apiVersion] ?? "?"}/${o.kind}";\n` +
          `export const o${i}: T${i} = ${JSON.stringify(o)};\n`,
      )
      .join("");
    const options: ts.CompilerOptions = {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, lang, ...rest) =>
      name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => name === file || fileExists(name);
    const program = ts.createProgram([file], options, host);
    return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  }

  it("no object has a field the schemas do not know (kubectl --validate=strict)", () => {
    // The check has teeth: a misspelt field is caught.
    const typo = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "x" },
      spec: { replcas: 3 },
    } as unknown as K8sObject;
    expect(strictErrors([typo]).join("\n")).toMatch(/replcas/);
    expect(strictErrors(ALL.map((x) => x.o))).toEqual([]);
  }, 60_000);

  it("the Secrets and ConfigMaps a manifest uses but does not hold are created by the commands it shows", () => {
    for (const { file, text, o } of ALL) {
      if (o.kind !== "Deployment") continue;
      const spec = podSpec(o);
      const secrets = new Set<string>();
      const configMaps = new Set<string>();
      for (const v of spec.volumes ?? []) {
        if (v.secret) secrets.add(v.secret.secretName);
        if (v.configMap) configMaps.add(v.configMap.name);
      }
      for (const c of [...(spec.initContainers ?? []), ...spec.containers])
        for (const e of c.env ?? [])
          if (e.valueFrom?.secretKeyRef) secrets.add(e.valueFrom.secretKeyRef.name);
      for (const s of secrets)
        expect(text, `${file}: Secret ${s}`).toMatch(new RegExp(`create secret \\S+ ${s} `));
      const held = new Set(ALL.filter((x) => x.o.kind === "ConfigMap").map((x) => x.o.metadata.name));
      for (const cm of configMaps)
        if (!held.has(cm))
          expect(text, `${file}: ConfigMap ${cm}`).toMatch(new RegExp(`create configmap ${cm} `));
    }
  });
});

describe("the configs the ConfigMaps hold", () => {
  it.each([
    ["billing-app", "config/sidecar.yaml"],
    ["stoka-proxy-gateway", "config/gateway.yaml"],
  ])("%s mounts the same config as %s", (deployment, file) => {
    const d = one("Deployment", deployment);
    const [c] = proxyContainers(podSpec(d));
    expect(mountedConfig(d, c as Container)).toEqual(parse(readFileSync(join(ROOT, file), "utf8")));
  });
});

describe("the sidecar", () => {
  const d = one("Deployment", "billing-app");
  const spec = podSpec(d);
  const proxy = spec.initContainers?.find((c) => c.name === "stoka-proxy") as Container;
  const app = spec.containers.find((c) => c.name === "app") as Container;
  const config = mountedConfig(d, proxy);
  const env = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value ?? "";

  it("is a native sidecar: an init container with restartPolicy Always, after the trust bundle", () => {
    expect(proxy.restartPolicy).toBe("Always");
    expect(spec.initContainers?.map((c) => c.name)).toEqual(["trust-bundle", "stoka-proxy"]);
    expect(spec.containers.map((c) => c.name)).toEqual(["app"]);
  });

  it("points the app at the proxy's listener and keeps cluster traffic direct", () => {
    for (const name of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"])
      expect(new URL(env(app, name)).host, name).toBe(config.listen);
    for (const name of ["NO_PROXY", "no_proxy"]) {
      const entries = env(app, name).split(",");
      expect(entries).toEqual(expect.arrayContaining([".svc", ".cluster.local", "127.0.0.1", "localhost"]));
      expect(
        entries.some((e) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(e)),
        "a service CIDR",
      ).toBe(true);
    }
  });

  it("gives the app the CA (certificate only) and the proxy the seed and the CA key, as files", () => {
    const appMounts = (app.volumeMounts ?? []).map((m) => m.mountPath);
    for (const name of ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE"])
      expect(
        appMounts.some((p) => env(app, name).startsWith(`${p}/`)),
        name,
      ).toBe(true);
    const volumesOf = (c: Container) =>
      (c.volumeMounts ?? []).map((m) => spec.volumes?.find((v) => v.name === m.name) as Volume);
    // No container but the proxy sees the CA key or the seed.
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      const keys = volumesOf(c).flatMap((v) => v.secret?.items?.map((i) => i.key) ?? []);
      if (c !== proxy) expect(keys, c.name).not.toEqual(expect.arrayContaining(["tls.key"]));
      if (c !== proxy) expect(keys, c.name).not.toContain("seed");
    }
    expect(env(proxy, "STELLAR_SECRET_FILE")).toBe((config.wallet as Json).secret_file);
    for (const v of volumesOf(proxy).filter((x) => x.secret)) expect(v.secret?.defaultMode).toBe(0o440);
  });
});

describe("the gateway", () => {
  const d = one("Deployment", "stoka-proxy-gateway");
  const spec = podSpec(d);
  const [proxy] = proxyContainers(spec) as [Container];
  const config = mountedConfig(d, proxy);
  const service = one("Service", "stoka-proxy");

  it("runs 3 replicas on PostgreSQL, spread over nodes, with a grace period longer than the drain", () => {
    expect((d.spec as { replicas: number }).replicas).toBe(3);
    expect(config.payment_store).toEqual({ kind: "postgres" });
    expect(
      proxy.env?.find((e) => e.name === "STOKA_PROXY_DATABASE_URL")?.valueFrom?.secretKeyRef,
    ).toBeDefined();
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(20);
    expect(JSON.stringify(spec.affinity)).toMatch(/podAntiAffinity/);
    expect(spec.topologySpreadConstraints?.map((t) => t.topologyKey)).toContain("kubernetes.io/hostname");
  });

  it("listens beyond loopback with client tokens, a budget for each client", () => {
    expect(config.listen).toMatch(/^0\.0\.0\.0:/);
    const clients = config.clients as { name: string }[];
    expect(clients.length).toBeGreaterThan(1);
    const budgets = config.budgets as { match: { clients?: string[] } }[];
    for (const c of clients)
      expect(
        budgets.some((b) => b.match.clients?.includes(c.name)),
        c.name,
      ).toBe(true);
  });

  it("the Service, the PodDisruptionBudget and the ServiceMonitor select the gateway's pods and ports", () => {
    const labels = podLabels(d);
    const svc = service.spec as {
      selector: Record<string, string>;
      ports: { name: string; targetPort: string }[];
    };
    expect(selects(svc.selector, labels)).toBe(true);
    const portNames = (proxy.ports ?? []).map((p) => p.name);
    for (const p of svc.ports) expect(portNames).toContain(p.targetPort);
    const pdb = one("PodDisruptionBudget", "stoka-proxy-gateway").spec as {
      selector: { matchLabels: Record<string, string> };
      maxUnavailable?: number;
    };
    expect(selects(pdb.selector.matchLabels, labels)).toBe(true);
    expect(pdb.maxUnavailable).toBe(1);
    const sm = one("ServiceMonitor", "stoka-proxy-gateway").spec as {
      selector: { matchLabels: Record<string, string> };
      endpoints: { port: string; path: string }[];
    };
    expect(selects(sm.selector.matchLabels, service.metadata.labels ?? {})).toBe(true);
    expect(sm.endpoints.map((e) => [e.port, e.path])).toEqual([["admin", "/metrics"]]);
    expect(svc.ports.map((p) => p.name)).toContain("admin");
  });
});

/** Generated stand-ins for each Secret key (and ConfigMap created by hand) the manifests name. */
let ca: CertificateAuthority;
let signerTls: PemPair;
const seed = Keypair.random().secret();
const token = randomBytes(32).toString("hex");
const podToken = randomBytes(32).toString("hex");
let database: TestDatabase;
const generated = (name: string, key: string): string => {
  const values: Record<string, string> = {
    "stoka-proxy-wallet/seed": `${seed}\n`,
    "stoka-proxy-ca/tls.crt": ca.certPem,
    "stoka-proxy-ca/tls.key": ca.keyPem,
    "stoka-proxy-ca/ca.crt": ca.certPem,
    "stoka-proxy-database/url": database.url,
    "stoka-proxy-token/token": token,
    "stoka-proxy-signer-tls/tls.crt": signerTls.certPem,
    "stoka-proxy-signer-tls/tls.key": signerTls.keyPem,
    "stoka-proxy-signer-tokens/orders-app": `${podToken}\n`,
    "orders-app-signer-token/token": `${podToken}\n`,
    "stoka-proxy-signer-ca/ca.crt": ca.certPem,
  };
  const value = values[`${name}/${key}`];
  if (value === undefined) throw new Error(`no generated value for ${name}/${key}`);
  return value;
};

/**
 * A container's view of its pod: each volume mount a folder under `root`, filled as the kubelet
 * would (ConfigMap and Secret items as files), and its environment (the image's ENV, then the
 * container's, $(VAR) expanded). Image paths under a mount map to the folder.
 */
function layOut(d: K8sObject, c: Container, root: string) {
  const spec = podSpec(d);
  const mounts = (c.volumeMounts ?? [])
    .map((m) => ({ path: m.mountPath, host: join(root, m.mountPath) }))
    .sort((a, b) => b.path.length - a.path.length);
  for (const m of c.volumeMounts ?? []) {
    const v = spec.volumes?.find((x) => x.name === m.name) as Volume;
    const dir = join(root, m.mountPath);
    mkdirSync(dir, { recursive: true });
    if (v.configMap) {
      const held = ALL.find((x) => x.o.kind === "ConfigMap" && x.o.metadata.name === v.configMap?.name)?.o;
      for (const item of v.configMap.items ?? [])
        writeFileSync(join(dir, item.path), held?.data?.[item.key] ?? generated(v.configMap.name, item.key));
    }
    if (v.secret)
      for (const item of v.secret.items ?? [])
        writeFileSync(join(dir, item.path), generated(v.secret.secretName, item.key), {
          mode: v.secret.defaultMode ?? 0o644,
        });
  }
  const boundary = new RegExp(
    `(^|[\\s="':])(${mounts.map((m) => m.path.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")).join("|")})(?=/|\\s|$|')`,
    "g",
  );
  const map = (text: string) =>
    mounts.length === 0
      ? text
      : text.replace(
          boundary,
          (_, lead: string, p: string) => `${lead}${mounts.find((m) => m.path === p)?.host}`,
        );
  const env: Record<string, string> = { ...IMAGE_ENV };
  for (const e of c.env ?? []) {
    const ref = e.valueFrom?.secretKeyRef;
    const raw = ref ? generated(ref.name, ref.key) : (e.value ?? "");
    env[e.name] = raw.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, n: string) => env[n] ?? all);
  }
  return { map, env, mapped: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, map(v)])) };
}

/** Maps every image path in the mounted config file to the laid-out folders. */
function mapConfigFile(path: string, map: (s: string) => string, edit: (c: Json) => void = () => undefined) {
  const deep = (v: unknown): unknown =>
    typeof v === "string"
      ? map(v)
      : Array.isArray(v)
        ? v.map(deep)
        : v && typeof v === "object"
          ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deep(x)]))
          : v;
  const config = deep(parse(readFileSync(path, "utf8"))) as Json;
  edit(config);
  chmodSync(path, 0o644);
  writeFileSync(path, stringify(config));
}

const tmp = mkdtempSync(join(tmpdir(), "stoka-k8s-"));
const children: ChildProcess[] = [];
let origin: Origin;

beforeAll(async () => {
  ca = await createCertificateAuthority("stoka-proxy test CA");
  signerTls = await issueLeafCertificate(ca, ["stoka-proxy-signer.stoka.svc", "127.0.0.1"]);
  database = await createTestDatabase();
  origin = await startOrigin();
});
afterAll(async () => {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  }
  await origin?.close();
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

const hostEnv = () => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" });

describe("each proxy container's config, with the env and files its pod gives it", () => {
  const cases = ALL.filter((x) => x.o.kind === "Deployment").flatMap((x) =>
    proxyContainers(podSpec(x.o)).map((c) => [`${x.file}: ${x.o.metadata.name}/${c.name}`, x.o, c] as const),
  );

  it("there is one in the sidecar and one in the gateway", () => {
    expect(cases.map((c) => c[0])).toEqual([
      "deploy/kubernetes/gateway/stoka-proxy-gateway.yaml: stoka-proxy-gateway/stoka-proxy",
      "deploy/kubernetes/keyless/orders-app.yaml: orders-app/stoka-proxy",
      "deploy/kubernetes/keyless/stoka-proxy-signer.yaml: stoka-proxy-signer/stoka-proxy",
      "deploy/kubernetes/sidecar/billing-app.yaml: billing-app/stoka-proxy",
    ]);
  });

  it.each(cases)(
    "%s passes check-config",
    async (_, d, c) => {
      const root = mkdtempSync(join(tmp, "pod-"));
      const pod = layOut(d, c, root);
      mapConfigFile(pod.mapped.STOKA_PROXY_CONFIG as string, pod.map);
      // The container's command with check-config in place of its args (`start`).
      expect(c.args).toEqual(["start"]);
      const r = await run(process.execPath, [...CLI, "check-config"], {
        cwd: ROOT,
        env: { ...hostEnv(), ...pod.mapped },
      }).catch((e: { stdout?: string; stderr?: string }) => ({
        stdout: e.stdout ?? "",
        stderr: e.stderr ?? "",
      }));
      expect(r.stderr).toBe("");
      // The keyless sidecar holds no key: its signer is the signer role (keyless/).
      expect(r.stdout).toMatch(
        d.metadata.name === "orders-app"
          ? /^configuration is valid: stellar:testnet, .*signer: remote signer\n$/
          : /^configuration is valid: stellar:testnet, .*signer: local key/,
      );
    },
    30_000,
  );
});

/** Starts the container's command from its laid-out pod; the listeners on free loopback ports. */
async function startContainer(d: K8sObject, c: Container, edit?: (config: Json) => void) {
  const root = mkdtempSync(join(tmp, "pod-"));
  const pod = layOut(d, c, root);
  mapConfigFile(pod.mapped.STOKA_PROXY_CONFIG as string, pod.map, edit);
  const config = parse(readFileSync(pod.mapped.STOKA_PROXY_CONFIG as string, "utf8")) as Json;
  const ports = { proxy: await freePort(), admin: await freePort() };
  const child = spawn(process.execPath, [...CLI, ...(c.args ?? [])], {
    cwd: ROOT,
    env: {
      ...hostEnv(),
      ...pod.mapped,
      STOKA_PROXY_LISTEN: `127.0.0.1:${ports.proxy}`,
      STOKA_PROXY_ADMIN_LISTEN: `127.0.0.1:${ports.admin}`,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let output = "";
  child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
  const deadline = Date.now() + 30_000;
  while (!output.includes("stoka-proxy listening") && Date.now() < deadline && child.exitCode === null)
    await new Promise((r) => setTimeout(r, 100));
  if (!output.includes("stoka-proxy listening")) throw new Error(`did not start:\n${output}`);
  /** A probe's httpGet, its named port resolved to the containerPort, that port mapped. */
  const probe = async (p: Probe) => {
    const port =
      typeof p.httpGet.port === "number"
        ? p.httpGet.port
        : c.ports?.find((x) => x.name === p.httpGet.port)?.containerPort;
    expect(`0.0.0.0:${port}`).toBe(config.admin_listen);
    return (await fetch(`http://127.0.0.1:${ports.admin}${p.httpGet.path}`)).status;
  };
  return { pod, ports, probe, output: () => output, root };
}

describe("started as the pod starts it", () => {
  it("the sidecar answers its startup, liveness and readiness probes; the app's trust bundle holds the CA", async () => {
    const d = one("Deployment", "billing-app");
    const spec = podSpec(d);
    const proxy = spec.initContainers?.find((c) => c.name === "stoka-proxy") as Container;
    const started = await startContainer(d, proxy);
    for (const p of [proxy.startupProbe, proxy.livenessProbe, proxy.readinessProbe])
      expect(await started.probe(p as Probe), started.output()).toBe(200);
    expect(proxy.startupProbe?.httpGet.path).toBe("/healthz");
    expect(proxy.readinessProbe?.httpGet.path).toBe("/readyz");
    expect(started.output()).not.toContain(seed);

    // The trust-bundle step, run in its own laid-out pod (the system bundle is this host's,
    // as it is the image's: Debian's ca-certificates).
    const bundleStep = spec.initContainers?.find((c) => c.name === "trust-bundle") as Container;
    const root = mkdtempSync(join(tmp, "pod-"));
    const pod = layOut(d, bundleStep, root);
    const [sh, ...args] = (bundleStep.command ?? []).map((a) => pod.map(a));
    await run(sh as string, args);
    const app = spec.containers.find((c) => c.name === "app") as Container;
    const appPod = layOut(d, app, root);
    const bundle = readFileSync(appPod.mapped.SSL_CERT_FILE as string, "utf8");
    expect(bundle).toContain(ca.certPem.trim());
    expect(bundle.match(/BEGIN CERTIFICATE/g)?.length).toBeGreaterThan(10);
    expect(readFileSync(appPod.mapped.NODE_EXTRA_CA_CERTS as string, "utf8").trim()).toBe(ca.certPem.trim());
    expect(bundle).not.toMatch(/PRIVATE KEY/);
  }, 60_000);

  it("the gateway answers its probes, and the client example's token (hashed in the config) gets through", async () => {
    const d = one("Deployment", "stoka-proxy-gateway");
    const [proxy] = proxyContainers(podSpec(d)) as [Container];
    // The client example: its proxy URL, $(STOKA_PROXY_TOKEN) expanded from its Secret.
    const client = one("Deployment", "report-builder");
    const clientPod = layOut(
      client,
      podSpec(client).containers[0] as Container,
      mkdtempSync(join(tmp, "pod-")),
    );
    const url = new URL(clientPod.env.HTTPS_PROXY as string);
    const service = one("Service", "stoka-proxy");
    expect(url.hostname).toBe(`${service.metadata.name}.${service.metadata.namespace}.svc`);
    expect(Number(url.port)).toBe(
      (service.spec as { ports: { name: string; port: number }[] }).ports[0]?.port,
    );
    expect(url.password).toBe(token);
    const started = await startContainer(d, proxy, (config) => {
      // The operator's step: the team's token hash in place of the placeholder.
      const entry = (config.clients as { name: string; token_sha256: string }[]).find(
        (c) => c.name === url.username,
      );
      if (!entry) throw new Error(`no client ${url.username} in the gateway's config`);
      entry.token_sha256 = createHash("sha256").update(token).digest("hex");
    });
    for (const p of [proxy.startupProbe, proxy.livenessProbe, proxy.readinessProbe])
      expect(await started.probe(p as Probe), started.output()).toBe(200);

    const via = (auth: string) => `http://${auth}127.0.0.1:${started.ports.proxy}`;
    const target = `${origin.url}/report`;
    const anonymous = await curl({ proxy: via(""), method: "GET", url: target });
    expect(anonymous.status).toBe(407);
    const wrong = await curl({
      proxy: via(`${url.username}:${"0".repeat(64)}@`),
      method: "GET",
      url: target,
    });
    expect(wrong.status).toBe(407);
    // Authenticated; then refused by egress (deny_private: the origin is on loopback), never 407.
    const team = await curl({ proxy: via(`${url.username}:${url.password}@`), method: "GET", url: target });
    expect(team.status).toBe(403);
    expect(team.headers["x-stoka-proxy-error"]).toBe("egress_denied");
    expect(origin.received).toHaveLength(0);
    expect(started.output()).not.toContain(token);
    expect(started.output()).not.toContain(seed);
  }, 60_000);
});

describe("the keyless sidecar and its signer", () => {
  const sidecar = one("Deployment", "orders-app");
  const signerDeployment = one("Deployment", "stoka-proxy-signer");
  const sidecarProxy = proxyContainers(podSpec(sidecar))[0] as Container;
  const signerProxy = proxyContainers(podSpec(signerDeployment))[0] as Container;
  const sidecarConfig = mountedConfig(sidecar, sidecarProxy);
  const signerConfig = mountedConfig(signerDeployment, signerProxy);
  const remote = (sidecarConfig.wallet as { remote_signer: { url: string } }).remote_signer;

  it("the sidecar's pod holds no seed; it reaches the signer's Service, which admits its pods", () => {
    const spec = podSpec(sidecar);
    for (const v of spec.volumes ?? []) expect(v.secret?.secretName).not.toBe("stoka-proxy-wallet");
    for (const c of [...(spec.initContainers ?? []), ...spec.containers])
      expect(c.env?.map((e) => e.name) ?? []).not.toContain("STELLAR_SECRET_FILE");
    expect(sidecarConfig.wallet).not.toHaveProperty("secret_file");
    const service = one("Service", "stoka-proxy-signer");
    const url = new URL(remote.url);
    expect(url.hostname).toBe(`${service.metadata.name}.${service.metadata.namespace}.svc`);
    expect(Number(url.port)).toBe((service.spec as { ports: { port: number }[] }).ports[0]?.port);
    const policy = one("NetworkPolicy", "stoka-proxy-signer").spec as {
      ingress: { from?: { podSelector?: { matchLabels: Record<string, string> } }[] }[];
    };
    const admitted = policy.ingress[0]?.from?.[0]?.podSelector?.matchLabels ?? {};
    expect(selects(admitted, podLabels(sidecar))).toBe(true);
    // Each signer token's client has a budget: a token can spend only that.
    const tokens = (signerConfig.signer as { tokens: { client: string }[] }).tokens;
    const budgets = signerConfig.budgets as { match: { clients?: string[] } }[];
    for (const t of tokens) expect(budgets.some((b) => b.match.clients?.includes(t.client))).toBe(true);
    expect(tokens.map((t) => t.client)).toContain(sidecarConfig.client_name);
  });

  it("started as the pods start them: the signer answers the sidecar's token, and the sidecar its probes", async () => {
    const signerPort = await freePort();
    const signer = await startContainer(signerDeployment, signerProxy, (config) => {
      (config.signer as { listen: string }).listen = `127.0.0.1:${signerPort}`;
    });
    for (const p of [signerProxy.startupProbe, signerProxy.readinessProbe])
      expect(await signer.probe(p as Probe), signer.output()).toBe(200);
    const ask = (bearer: string) =>
      fetchSigner(`https://127.0.0.1:${signerPort}/signer/v1/wallet`, bearer, ca.certPem);
    const ok = await ask(podToken);
    expect(ok.status).toBe(200);
    expect(ok.json.address).toBe(Keypair.fromSecret(seed).publicKey());
    expect((await ask("0".repeat(64))).status).toBe(401);
    const started = await startContainer(sidecar, sidecarProxy, (config) => {
      (config.wallet as { remote_signer: { url: string } }).remote_signer.url =
        `https://127.0.0.1:${signerPort}`;
    });
    for (const p of [sidecarProxy.startupProbe, sidecarProxy.livenessProbe, sidecarProxy.readinessProbe])
      expect(await started.probe(p as Probe), started.output()).toBe(200);
    for (const out of [signer.output(), started.output()]) {
      expect(out).not.toContain(podToken);
      expect(out).not.toContain(seed);
    }
  }, 60_000);
});

/** GET on the signer's HTTPS listener with a bearer token, trusting `caPem`. */
function fetchSigner(url: string, bearer: string, caPem: string): Promise<{ status: number; json: Json }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { agent: new Agent({ ca: caPem }), headers: { authorization: `Bearer ${bearer}` } },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString("utf8")));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text || "{}") as Json }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("the Prometheus scrape config for a Prometheus without the operator", () => {
  it("passes promtool and keeps the gateway Service's admin port", async () => {
    requireTool("prometheus");
    const file = join(ROOT, "deploy/prometheus/stoka-proxy-scrape.yml");
    const scrape = parse(readFileSync(file, "utf8")) as {
      scrape_configs: { job_name: string; kubernetes_sd_configs?: Json[]; relabel_configs: Json[] }[];
    };
    const job = scrape.scrape_configs[0] as (typeof scrape.scrape_configs)[0];
    expect(job.job_name).toBe("stoka-proxy");
    expect(job.kubernetes_sd_configs).toEqual([{ role: "endpoints", namespaces: { names: ["stoka"] } }]);
    const keep = job.relabel_configs.find((r) => r.action === "keep") as { regex: string };
    const service = one("Service", "stoka-proxy");
    expect(keep.regex).toBe(`${service.metadata.name};admin`);
    // Debian's Prometheus is built without Kubernetes discovery: the rest of the job is
    // checked with a static target in its place.
    const { kubernetes_sd_configs: _sd, ...rest } = job;
    const checked = join(mkdtempSync(join(tmp, "prom-")), "prometheus.yml");
    writeFileSync(
      checked,
      stringify({ scrape_configs: [{ ...rest, static_configs: [{ targets: ["127.0.0.1:9402"] }] }] }),
    );
    const r = await run("promtool", ["check", "config", checked]);
    expect(r.stdout).toMatch(/SUCCESS/);
    expect(relative(ROOT, dirname(file))).toBe("deploy/prometheus");
  });
});

describe("grace periods", () => {
  it("every pod running the proxy gives it longer than its configured drain (shutdown.drain_seconds)", () => {
    const deployments = ALL.filter((x) => x.o.kind === "Deployment").map((x) => x.o);
    let checked = 0;
    for (const d of deployments) {
      const spec = podSpec(d);
      for (const c of proxyContainers(spec)) {
        const shutdown = (mountedConfig(d, c) as { shutdown?: { drain_seconds?: number } }).shutdown;
        const drain = shutdown?.drain_seconds ?? 20;
        // Kubernetes' default is 30 s; the kill comes at the grace period's end, drain or not.
        expect(spec.terminationGracePeriodSeconds ?? 30, `${d.metadata.name}/${c.name}`).toBeGreaterThan(
          drain + 5,
        );
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(2);
  });
});
