import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { StokaProxyError } from "../../src/errors.js";

/** payment_store (docs/configuration.md "Payment store"): where the URL comes from, what is refused. */
const dir = mkdtempSync(join(tmpdir(), "stoka-config-ps-"));
let n = 0;
function file(text: string): string {
  const p = join(dir, `c${n++}.yaml`);
  writeFileSync(p, text);
  return p;
}
const PASSWORD = "s3cret-db-password-never-shown";
const URL_WITH_PASSWORD = `postgres://stoka:${PASSWORD}@db.internal:5432/stoka`;

function refusal(env: NodeJS.ProcessEnv, text: string): StokaProxyError {
  try {
    loadConfig(env, { config: file(text) });
  } catch (e) {
    if (e instanceof StokaProxyError) return e;
    throw e;
  }
  throw new Error("the configuration was accepted");
}

describe("payment_store", () => {
  it("defaults to the SQLite file in data_dir, whatever the environment says", () => {
    expect(loadConfig({}).paymentStore).toEqual({ kind: "sqlite" });
    expect(loadConfig({ STOKA_PROXY_DATABASE_URL: URL_WITH_PASSWORD }).paymentStore).toEqual({
      kind: "sqlite",
    });
  });

  it("postgres: STOKA_PROXY_DATABASE_URL beats url_file beats url", () => {
    const urlFile = join(dir, "url");
    writeFileSync(urlFile, "postgres://from-file@db:5432/f\n");
    const both = file(
      `payment_store: { kind: postgres, url: "postgres://from-config@db/c", url_file: ${urlFile} }\n`,
    );
    expect(
      loadConfig({ STOKA_PROXY_DATABASE_URL: URL_WITH_PASSWORD }, { config: both }).paymentStore,
    ).toEqual({
      kind: "postgres",
      url: URL_WITH_PASSWORD,
      poolMax: 10,
    });
    expect(loadConfig({}, { config: both }).paymentStore).toMatchObject({
      url: "postgres://from-file@db:5432/f",
    });
    const inline = file('payment_store: { kind: postgres, url: "postgresql://x@db/c", pool_max: 4 }\n');
    expect(loadConfig({}, { config: inline }).paymentStore).toEqual({
      kind: "postgres",
      url: "postgresql://x@db/c",
      poolMax: 4,
    });
  });

  it("postgres without a URL says where to put it", () => {
    const e = refusal({}, "payment_store: { kind: postgres }\n");
    expect(e.code).toBe("config_invalid");
    expect(e.message).toMatch(/payment_store\.url: payment_store\.kind: postgres needs the database's URL/);
    expect(e.hint).toMatch(/STOKA_PROXY_DATABASE_URL/);
  });

  it("a URL that is not postgres:// is refused without quoting it (it may hold a password)", () => {
    const e = refusal(
      { STOKA_PROXY_DATABASE_URL: `mysql://stoka:${PASSWORD}@db/stoka` },
      "payment_store: { kind: postgres }\n",
    );
    expect(e.message).toMatch(/STOKA_PROXY_DATABASE_URL: is not a postgres:/);
    expect(`${e.message} ${e.hint}`).not.toContain(PASSWORD);
  });

  it("refuses a budget store beside it, saying what to do", () => {
    const redis = refusal(
      {},
      "payment_store: { kind: postgres, url: 'postgres://db/x' }\nbudget_store: { kind: redis }\n",
    );
    expect(redis.message).toMatch(
      /budget_store\.kind: a redis budget store cannot be used with payment_store\.kind: postgres/,
    );
    expect(redis.hint).toMatch(/remove budget_store/);
    const sqlite = refusal(
      {},
      "payment_store: { kind: postgres, url: 'postgres://db/x' }\nbudget_store: { kind: sqlite }\n",
    );
    expect(sqlite.message).toMatch(/a sqlite budget store cannot be used/);
    const env = refusal(
      { STOKA_PROXY_REDIS_URL: "redis://127.0.0.1:6379" },
      "payment_store: { kind: postgres, url: 'postgres://db/x' }\n",
    );
    expect(env.message).toMatch(/STOKA_PROXY_REDIS_URL: a redis budget store cannot be used/);
    expect(env.hint).toMatch(/unset STOKA_PROXY_REDIS_URL/);
  });

  it("refuses postgres fields with kind sqlite", () => {
    const e = refusal({}, "payment_store: { url: 'postgres://db/x' }\n");
    expect(e.message).toMatch(/payment_store\.url: is only read with payment_store\.kind: postgres/);
  });
});
