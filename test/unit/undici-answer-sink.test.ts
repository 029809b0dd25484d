import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { UndiciAnswer } from "../../src/http/upstream-client.js";

/** Immediates this process has pending (ref'd): each is a turn of the event loop that cannot block. */
function pendingImmediates(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "Immediate").length;
}

function collector(): { out: Writable; chunks: Buffer[]; ended: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  const out = new Writable({
    write(c: Buffer, _e, cb) {
      chunks.push(c);
      cb();
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return { out, chunks, ended: () => ended };
}

function answer(): UndiciAnswer {
  const unused = () => undefined;
  return new UndiciAnswer(200, "OK", { "content-length": "5" }, unused, unused, unused, 10_000);
}

describe("an answer complete before the sink takes it (the paid host's fast path)", () => {
  it("hands the sink its bytes and end at once, and leaves nothing scheduled behind", async () => {
    // Head, body and end arrive in one read: undici calls push and finish before the proxy's
    // code (a microtask later) has called sinkTo.
    await new Promise((r) => setImmediate(r));
    const before = pendingImmediates();
    const a = answer();
    a.push(Buffer.from("hello"));
    a.finish();
    const sink = collector();
    a.sinkTo(sink.out);
    // Regression: finish() queued a two-turn deferred end that still ran after the sink had
    // ended the answer, two idle turns of the event loop per request.
    expect(pendingImmediates()).toBe(before);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(sink.chunks).toString()).toBe("hello");
    expect(sink.ended()).toBe(true);
  });

  it("still ends a reader that reads without a sink, after its deferred turns", async () => {
    const a = answer();
    a.push(Buffer.from("hello"));
    a.finish();
    const chunks: Buffer[] = [];
    a.on("data", (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve) => a.once("end", () => resolve()));
    expect(Buffer.concat(chunks).toString()).toBe("hello");
  });

  it("cancels the deferred end when the answer is destroyed before it", async () => {
    await new Promise((r) => setImmediate(r));
    const before = pendingImmediates();
    const a = answer();
    a.finish();
    a.destroy();
    await new Promise((r) => setImmediate(r));
    expect(pendingImmediates()).toBe(before);
  });
});
