import pg from "pg";
import { describe, expect, it } from "vitest";
import {
  databaseWhere,
  errorText,
  isRetryable,
  isStatementFault,
  sqlState,
} from "../../src/store/postgres-connection.js";

describe("where the database is, without its password", () => {
  it.each([
    ["postgres://stoka:s3cret@db.internal:6543/payments", "db.internal:6543/payments"],
    ["postgresql://stoka@10.0.0.5/payments?sslmode=require", "10.0.0.5:5432/payments"],
    ["postgres://u:p@[::1]:5433/x", "[::1]:5433/x"],
    ["postgres://u:p@host", "host:5432/(default database)"],
    ["not a url s3cret", "the configured database"],
  ])("%s", (url, where) => {
    expect(databaseWhere(url)).toBe(where);
    expect(databaseWhere(url)).not.toContain("s3cret");
  });

  it("a driver message that quotes the password is cleaned", () => {
    const url = "postgres://stoka:pa%24%24word-9@db/payments";
    expect(errorText(new Error('bad "pa$$word-9" here'), url)).toBe('bad "REDACTED" here');
    expect(errorText(new Error("connect ECONNREFUSED 127.0.0.1:5432"), url)).toBe(
      "connect ECONNREFUSED 127.0.0.1:5432",
    );
  });
});

describe("which failures are outages", () => {
  // What the driver makes of a server's error message, and a socket error of its own.
  const err = (code: string) =>
    /^E[A-Z]+$/.test(code)
      ? Object.assign(new Error(code), { code })
      : Object.assign(new pg.DatabaseError(code, 0, "error"), { code });
  it.each([
    ["23505", true, false],
    ["22003", true, false],
    ["42P01", true, false],
    ["40001", false, true],
    ["40P01", false, true],
    ["57P01", false, false],
    ["08006", false, false],
    ["53300", false, false],
    ["3D000", false, false],
    ["ECONNREFUSED", false, false],
  ])("%s: statement fault %s, retryable %s", (code, fault, retry) => {
    expect(isStatementFault(err(code))).toBe(fault);
    expect(isRetryable(err(code))).toBe(retry);
  });

  it("only the server's errors carry a SQLSTATE", () => {
    expect(sqlState(err("ECONNRESET"))).toBeNull();
    expect(sqlState(err("EPIPE"))).toBeNull();
    expect(sqlState(new Error("Connection terminated unexpectedly"))).toBeNull();
    expect(sqlState(err("57014"))).toBe("57014");
  });
});
