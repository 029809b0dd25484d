import { describe, expect, it } from "vitest";
import { requestFramingProblem } from "../../src/proxy/request-checks.js";
import type { RequestHead } from "../../src/proxy/request-checks.js";

/** Heads the proxy refuses with its own code before reading the target. */
const head = (httpVersion: string, raw: [string, string][]): RequestHead => {
  const headers: Record<string, string> = {};
  for (const [k, v] of raw) headers[k.toLowerCase()] ??= v;
  return { httpVersion, rawHeaders: raw.flat(), headers };
};

describe("request heads", () => {
  it.each<[string, RequestHead]>([
    ["HTTP/1.1 with one Host", head("1.1", [["Host", "test.api.stoka.space"]])],
    ["HTTP/1.1 with an empty Host", head("1.1", [["Host", ""]])],
    ["HTTP/1.1 with Host [::1]:8402", head("1.1", [["host", "[::1]:8402"]])],
    ["HTTP/1.0 without Host", head("1.0", [])],
    [
      "Expect: 100-continue",
      head("1.1", [
        ["Host", "h"],
        ["Expect", "100-Continue"],
      ]),
    ],
    [
      "Transfer-Encoding: chunked",
      head("1.1", [
        ["Host", "h"],
        ["Transfer-Encoding", "Chunked"],
      ]),
    ],
  ])("%s is accepted", (_name, h) => {
    expect(requestFramingProblem(h)).toBeNull();
  });

  it.each<[string, RequestHead, string]>([
    ["HTTP/1.1 without Host", head("1.1", []), "bad_request"],
    [
      "two Host lines",
      head("1.1", [
        ["Host", "a"],
        ["host", "b"],
      ]),
      "bad_request",
    ],
    ["a Host with userinfo", head("1.1", [["Host", "u@evil"]]), "bad_request"],
    ["a Host with a path", head("1.1", [["Host", "a/b"]]), "bad_request"],
    [
      "Expect: 200-ok",
      head("1.1", [
        ["Host", "h"],
        ["Expect", "200-ok"],
      ]),
      "expectation_failed",
    ],
    [
      "Transfer-Encoding: gzip, chunked",
      head("1.1", [
        ["Host", "h"],
        ["Transfer-Encoding", "gzip, chunked"],
      ]),
      "transfer_coding_unsupported",
    ],
  ])("%s is refused", (_name, h, code) => {
    expect(requestFramingProblem(h)?.code).toBe(code);
  });
});
