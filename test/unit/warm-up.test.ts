import net from "node:net";
import { describe, expect, it, vi } from "vitest";
import { NETWORKS } from "../../src/stellar/networks.js";
import { warmUpPaymentCode } from "../../src/wallet/warm-up.js";

describe("the payment code's start-up warm-up (src/wallet/warm-up.ts)", () => {
  it("builds, signs and decodes a throwaway transfer without opening any connection", async () => {
    const connect = vi.spyOn(net.Socket.prototype, "connect");
    try {
      for (const n of Object.values(NETWORKS)) {
        const ms = await warmUpPaymentCode(n.passphrase);
        expect(ms).toBeGreaterThan(0);
      }
      expect(connect).not.toHaveBeenCalled();
    } finally {
      connect.mockRestore();
    }
  });
});
