import { describe, expect, it } from "vitest";
import { resolveConfig } from "../../src/config/load.js";
import { configFileSchema } from "../../src/config/schema.js";
import { StokaProxyError } from "../../src/errors.js";
import { clientErrorAnswer, insecureParserRequested } from "../../src/proxy/client-error.js";
import { admission, clientAddress } from "../../src/proxy/connections.js";
import { rawErrorResponse } from "../../src/proxy/error-answers.js";

/** Connection admission, what a parser error is answered with, and their configuration. */
describe("admission", () => {
  const limits = { maxTotal: 10, maxPerClient: 3 };
  it.each([
    [0, 0, "admitted"],
    [9, 2, "admitted"],
    [9, 3, "over_client"],
    [10, 0, "over_total"],
    [10, 3, "over_total"],
    [11, 0, "over_total"],
  ] as const)("%i open, %i from this client: %s", (total, fromClient, verdict) => {
    expect(admission(total, fromClient, limits)).toBe(verdict);
  });

  it.each([
    ["127.0.0.1", "127.0.0.1"],
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["::1", "::1"],
    [undefined, "unknown"],
  ])("client %s is %s", (remoteAddress, client) => {
    expect(clientAddress({ remoteAddress })).toBe(client);
  });
});

describe("answers to parser errors", () => {
  const err = (code: string, reason?: string) =>
    Object.assign(new Error("Parse Error"), { code, ...(reason ? { reason } : {}) });
  it.each([
    ["HPE_HEADER_OVERFLOW", "headers_too_large", 431],
    ["HPE_INVALID_TRANSFER_ENCODING", "malformed_request", 400],
    ["HPE_UNEXPECTED_CONTENT_LENGTH", "malformed_request", 400],
    ["HPE_INVALID_HEADER_TOKEN", "malformed_request", 400],
    ["HPE_LF_EXPECTED", "malformed_request", 400],
    ["HPE_CR_EXPECTED", "malformed_request", 400],
    ["HPE_INVALID_CHUNK_SIZE", "malformed_request", 400],
    ["ERR_HTTP_REQUEST_TIMEOUT", "request_timeout", 408],
  ])("%s → %s (%i)", (code, answer, status) => {
    const a = clientErrorAnswer(err(code, "Invalid header value char"));
    expect(a?.code).toBe(answer);
    expect(a?.status).toBe(status);
  });

  it("connection resets and TLS failures get no answer (the socket is just closed)", () => {
    expect(clientErrorAnswer(err("ECONNRESET"))).toBeNull();
    expect(clientErrorAnswer(err("ERR_SSL_WRONG_VERSION_NUMBER"))).toBeNull();
  });

  it("the message carries llhttp's fixed reason, never request bytes", () => {
    const a = clientErrorAnswer(err("HPE_INVALID_HEADER_TOKEN", "Invalid header value char"));
    expect(a?.message).toBe("the request is not valid HTTP/1.1: Invalid header value char");
  });

  it("a raw answer is complete HTTP/1.1 with the JSON error and X-Stoka-Proxy-Error", () => {
    const raw = rawErrorResponse(new StokaProxyError("too_many_connections", "busy", "retry"), {
      "Retry-After": "1",
    });
    const [head = "", body = ""] = raw.split("\r\n\r\n");
    const lines = head.split("\r\n");
    expect(lines[0]).toBe("HTTP/1.1 503 Service Unavailable");
    expect(lines).toContain("Retry-After: 1");
    expect(lines).toContain("X-Stoka-Proxy-Error: too_many_connections");
    expect(lines).toContain("Connection: close");
    expect(lines).toContain(`Content-Length: ${Buffer.byteLength(body)}`);
    expect(JSON.parse(body)).toEqual({ error: "busy", code: "too_many_connections", hint: "retry" });
  });

  it.each([
    [[], undefined, false],
    [["--import", "tsx"], "--max-old-space-size=512", false],
    [["--insecure-http-parser"], undefined, true],
    [[], "--max-old-space-size=512 --insecure-http-parser", true],
    [[], "--insecure-http-parser-x", false],
  ])("insecure parser requested by %j / NODE_OPTIONS=%s: %s", (argv, nodeOptions, requested) => {
    expect(insecureParserRequested(argv, nodeOptions)).toBe(requested);
  });
});

describe("timeouts and connections in the config", () => {
  const resolve = (file: unknown) => resolveConfig(configFileSchema.parse(file), "t.yaml", {});

  it("defaults", () => {
    const c = resolve({});
    expect(c.timeouts).toEqual({
      headersMs: 30_000,
      requestMs: 300_000,
      clientIdleMs: 30_000,
      tunnelIdleMs: 300_000,
    });
    expect(c.connections).toEqual({ maxTotal: 1024, maxPerClient: 256 });
    expect(c.maxHeaderBytes).toBe(16 * 1024);
  });

  it("seconds (fractions allowed) become ms", () => {
    const c = resolve({
      timeouts: {
        headers_seconds: 0.5,
        request_seconds: 2,
        client_idle_seconds: 1.25,
        tunnel_idle_seconds: 60,
      },
      connections: { max_total: 50, max_per_client: 5 },
      max_header_bytes: 8192,
    });
    expect(c.timeouts).toEqual({ headersMs: 500, requestMs: 2000, clientIdleMs: 1250, tunnelIdleMs: 60_000 });
    expect(c.connections).toEqual({ maxTotal: 50, maxPerClient: 5 });
    expect(c.maxHeaderBytes).toBe(8192);
  });

  it.each([
    [{ timeouts: { headers_seconds: 10, request_seconds: 5 } }, /timeouts\.headers_seconds/],
    [{ connections: { max_total: 5, max_per_client: 6 } }, /connections\.max_per_client/],
  ])("refuses %j", (file, field) => {
    expect(() => resolve(file)).toThrow(field);
  });

  it.each([
    { timeouts: { headers_seconds: 0 } },
    { timeouts: { tunnel_idle_seconds: -1 } },
    { timeouts: { idle: 5 } },
    { connections: { max_total: 1.5 } },
    { max_header_bytes: 10 },
  ])("the schema refuses %j", (file) => {
    expect(configFileSchema.safeParse(file).success).toBe(false);
  });
});
