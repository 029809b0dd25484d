import { describe, expect, it } from "vitest";
import type { PaidHostEntry } from "../../src/config/config.js";
import { findPaidHost, parsePaidHostAuthority, servedPaidHost } from "../../src/config/paid-hosts.js";

const entries: PaidHostEntry[] = [
  { host: "stoka.internal", payTo: ["ANY"] },
  { host: "stoka.internal", port: 8443, payTo: ["P8443"] },
  { host: "stoka.internal", port: 9443, upstream: new URL("https://backend:7000"), payTo: ["P9443"] },
  { host: "only.port", port: 8080, payTo: ["ONLY"] },
  { host: "::1", port: 8443, payTo: ["V6"] },
];

describe("paid hosts by authority", () => {
  it.each<[string, number, string | undefined]>([
    ["stoka.internal", 8443, "P8443"],
    ["STOKA.internal.", 8443, "P8443"],
    ["stoka.internal", 9443, "P9443"],
    ["stoka.internal", 443, "ANY"],
    ["stoka.internal", 80, "ANY"],
    ["only.port", 8080, "ONLY"],
    ["only.port", 8081, undefined],
    ["only.port", 80, undefined],
    ["::1", 8443, "V6"],
    ["[::1]", 8443, "V6"],
    ["[0:0::1]", 8443, "V6"],
    ["::1", 443, undefined],
    ["other.internal", 8443, undefined],
    ["stoka.internal.evil", 8443, undefined],
    ["stoka.internal..", 8443, undefined],
  ])("%s:%d → %s", (host, port, payee) => {
    expect(findPaidHost(entries, host, port)?.payTo[0]).toBe(payee);
  });

  it("an entry without upstream keeps the app's scheme and port; a configured upstream is used", () => {
    const any = entries[0] as PaidHostEntry;
    expect(servedPaidHost(any, "http", 8080).upstream.href).toBe("http://stoka.internal:8080/");
    expect(servedPaidHost(any, "https", 443).upstream.href).toBe("https://stoka.internal/");
    expect(servedPaidHost(entries[4] as PaidHostEntry, "http", 8443).upstream.href).toBe(
      "http://[::1]:8443/",
    );
    expect(servedPaidHost(entries[2] as PaidHostEntry, "http", 9443).upstream.href).toBe(
      "https://backend:7000/",
    );
  });

  it.each([
    ["stoka.internal", true],
    ["stoka.internal:8443", true],
    ["[::1]:8443", true],
    ["[::1]", true],
    ["", false],
    ["  ", false],
    ["https://stoka.internal", false],
    ["stoka.internal/v1", false],
    ["stoka.internal:8443/v1", false],
    ["stoka.internal?x", false],
    ["stoka.internal:0", false],
    ["stoka.internal:70000", false],
    ["::1", false],
    ["*.stoka.internal", false],
    ["user@stoka.internal", false],
  ])("paid_hosts host %j accepted: %s", (text, ok) => {
    expect(parsePaidHostAuthority(text).ok).toBe(ok);
  });
});
