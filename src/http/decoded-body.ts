import zlib from "node:zlib";
import type { UpstreamAnswer } from "./upstream-client.js";
import type { Transform } from "node:stream";

/**
 * Reads an upstream answer the proxy must understand (a 402) in full, decoded from its
 * Content-Encoding (RFC 9110 §8.4: gzip, x-gzip, deflate, br), within `max` bytes both as
 * received and as decoded: the decoded size is counted as it streams, so a decompression bomb
 * stops at the cap. Anything else (a coding the proxy does not decode, codings stacked, a body
 * that does not decode, a body past the cap) is `unreadable`, and the response is destroyed at
 * once: its socket is closed rather than drained, so an endless body cannot hold the app, and
 * it never goes back to the pool.
 */
export type DecodedBody = { ok: true; body: Buffer } | { ok: false; reason: string };

function decoderFor(coding: string): Transform | "identity" | null {
  switch (coding) {
    case "":
    case "identity":
      return "identity";
    case "gzip":
    case "x-gzip":
      return zlib.createGunzip();
    case "deflate":
      return zlib.createInflate();
    case "br":
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

/** The coding named by a Content-Encoding value, or null when it names more than one. */
export function singleCoding(header: string | string[] | undefined): string | null {
  const codings = [header ?? ""]
    .flat()
    .flatMap((v) => v.split(","))
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
  return codings.length > 1 ? null : (codings[0] ?? "");
}

/** Rejects only when the stream itself fails (cut, timed out): that is not the body's fault. */
export function readDecodedBody(res: UpstreamAnswer, max: number): Promise<DecodedBody> {
  const header = res.headers["content-encoding"];
  const coding = singleCoding(header);
  const decoder = coding === null ? null : decoderFor(coding);
  if (decoder === null) {
    res.destroy();
    return Promise.resolve({
      ok: false,
      reason: `the 402 body has Content-Encoding ${JSON.stringify(String(header))}, which the proxy does not decode`,
    });
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    const chunks: Buffer[] = [];
    let received = 0;
    let decoded = 0;
    const finish = (r: DecodedBody) => {
      if (settled) return;
      settled = true;
      if (!r.ok) {
        res.destroy();
        if (decoder !== "identity") decoder.destroy();
      }
      resolve(r);
    };
    const overCap = () => finish({ ok: false, reason: `the 402 body is larger than the ${max}-byte cap` });
    const onDecoded = (chunk: Buffer) => {
      decoded += chunk.length;
      if (decoded > max) return overCap();
      if (!settled) chunks.push(chunk);
    };
    res.on("error", (e) => {
      if (settled) return;
      settled = true;
      if (decoder !== "identity") decoder.destroy();
      reject(e);
    });
    res.on("data", (chunk: Buffer) => {
      if (settled) return;
      received += chunk.length;
      if (received > max) return overCap();
      if (decoder === "identity") onDecoded(chunk);
      else decoder.write(chunk);
    });
    if (decoder === "identity") {
      res.on("end", () => finish({ ok: true, body: Buffer.concat(chunks) }));
      return;
    }
    decoder.on("data", onDecoded);
    decoder.on("error", (e: Error) =>
      finish({
        ok: false,
        reason: `the 402 body does not decode as Content-Encoding ${coding}: ${e.message}`,
      }),
    );
    decoder.on("end", () => finish({ ok: true, body: Buffer.concat(chunks) }));
    res.on("end", () => {
      // No body at all (a HEAD, a 402 that says it all in PAYMENT-REQUIRED): nothing to decode.
      if (received === 0) finish({ ok: true, body: Buffer.alloc(0) });
      else if (!settled) decoder.end();
    });
  });
}
