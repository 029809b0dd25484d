import { createHash } from "node:crypto";
import { Keypair } from "@stellar/stellar-sdk";
import { describe, expect, it } from "vitest";
import { PaymentSwitch, adminTokenMatches, cleanText } from "../../../src/resilience/payment-switch.js";

const flip = (by: string, reason: string, atMs: number) => ({ by, reason, atMs });

describe("kill switch and dry run", () => {
  it("pays by default", () => {
    expect(new PaymentSwitch().decide()).toEqual({ kind: "pay" });
  });

  it("stop, then flip back, with who, why and when", () => {
    const s = new PaymentSwitch();
    expect(s.set({ stopped: true }, flip("admin:ops", "wallet rotation", 1_000))).toEqual([
      { switch: "stopped", on: true, by: "admin:ops", reason: "wallet rotation", atMs: 1_000 },
    ]);
    expect(s.decide()).toEqual({
      kind: "stopped",
      reason: "wallet rotation",
      by: "admin:ops",
      sinceMs: 1_000,
    });
    expect(s.set({ stopped: false }, flip("signal:SIGUSR2", "", 2_000))).toEqual([
      { switch: "stopped", on: false, by: "signal:SIGUSR2", reason: "switched back", atMs: 2_000 },
    ]);
    expect(s.decide()).toEqual({ kind: "pay" });
  });

  it("dry run decides but signs nothing; stopped wins over it", () => {
    const s = new PaymentSwitch();
    s.set({ dryRun: true }, flip("admin:ops", "", 1));
    expect(s.decide()).toEqual({
      kind: "dry_run",
      reason: "dry run: nothing is signed",
      by: "admin:ops",
      sinceMs: 1,
    });
    s.set({ stopped: true }, flip("admin:ops", "incident", 2));
    expect(s.decide().kind).toBe("stopped");
    s.set({ stopped: false }, flip("admin:ops", "", 3));
    expect(s.decide().kind).toBe("dry_run");
  });

  it("setting a switch to its state is no change and leaves no history", () => {
    const s = new PaymentSwitch();
    expect(s.set({ stopped: false, dryRun: false }, flip("admin", "", 1))).toEqual([]);
    s.set({ stopped: true }, flip("admin", "first", 2));
    expect(s.set({ stopped: true }, flip("admin", "second", 3))).toEqual([]);
    expect(s.decide()).toMatchObject({ reason: "first", sinceMs: 2 });
    expect(s.view().history).toHaveLength(1);
  });

  it("both switches in one call", () => {
    const s = new PaymentSwitch();
    expect(s.set({ stopped: true, dryRun: true }, flip("admin", "x", 1)).map((c) => c.switch)).toEqual([
      "stopped",
      "dry_run",
    ]);
  });

  it("the signal toggles", () => {
    const s = new PaymentSwitch();
    expect(s.toggleStopped(flip("signal:SIGUSR2", "", 1))[0]).toMatchObject({ on: true });
    expect(s.toggleStopped(flip("signal:SIGUSR2", "", 2))[0]).toMatchObject({ on: false });
  });

  it("start-up state from config", () => {
    expect(new PaymentSwitch({ stopped: true, atMs: 5 }).decide()).toEqual({
      kind: "stopped",
      reason: "stopped in the config",
      by: "config",
      sinceMs: 5,
    });
    expect(new PaymentSwitch({ dryRun: true }).decide().kind).toBe("dry_run");
  });

  it("keeps the last 50 flips, oldest first, as copies", () => {
    const s = new PaymentSwitch();
    for (let i = 0; i < 60; i++) s.toggleStopped(flip("admin", `flip ${i}`, i));
    const v = s.view();
    expect(v.history).toHaveLength(50);
    expect(v.history[0]?.reason).toBe("flip 10");
    v.history.length = 0;
    expect(s.view().history).toHaveLength(50);
  });

  it("reasons and labels are bounded, flat and free of secrets", () => {
    const seed = Keypair.random().secret();
    const s = new PaymentSwitch();
    const [c] = s.set(
      { stopped: true },
      flip(`admin\n${"x".repeat(100)}`, `rotating ${seed}\r\nnow, token sk_live_${"a1B2".repeat(8)}`, 1),
    );
    expect(c?.by.length).toBeLessThanOrEqual(64);
    expect(c?.by).not.toMatch(/\n/);
    expect(c?.reason).not.toContain(seed);
    expect(c?.reason).not.toMatch(/sk_live_/);
    expect(c?.reason).not.toMatch(/[\r\n]/);
    expect(cleanText("y".repeat(300), 200)).toHaveLength(200);
    expect(s.set({ dryRun: true }, flip("\u0000\u0001", "", 2))[0]?.by).toBe("unknown");
  });
});

describe("admin token", () => {
  const token = "f3Q9-admin-token-for-tests-only";
  const sha = createHash("sha256").update(token).digest("hex");
  it.each([
    ["the right token", `Bearer ${token}`, sha, true],
    ["the scheme in any case", `bearer ${token}`, sha, true],
    ["trailing space", `Bearer ${token} `, sha, true],
    ["a wrong token", "Bearer nope", sha, false],
    ["no header", undefined, sha, false],
    ["another scheme", `Basic ${token}`, sha, false],
    ["the hash itself is not the token", `Bearer ${sha}`, sha, false],
    ["a configured hash that is not one", `Bearer ${token}`, "abc", false],
    [
      "an uppercase configured hash is refused (config must give lowercase)",
      `Bearer ${token}`,
      sha.toUpperCase(),
      false,
    ],
  ])("%s", (_name, header, expected, ok) => {
    expect(adminTokenMatches(header, expected)).toBe(ok);
  });
});
