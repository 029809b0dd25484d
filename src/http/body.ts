import type { Readable } from "node:stream";

/** Buffers a stream up to `max` bytes; null when it is larger (the rest is drained). */
export function readAll(stream: Readable, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        over = true;
        chunks.length = 0;
      } else if (!over) chunks.push(chunk);
    });
    stream.on("end", () => resolve(over ? null : Buffer.concat(chunks)));
    stream.on("error", reject);
  });
}
