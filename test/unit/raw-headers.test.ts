import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { headersFromRaw } from "../../src/http/raw-headers.js";

/** headersFromRaw must give the object Node's IncomingMessage gives for the same head. */
const HEADS: [string, string[]][] = [
  ["plain", ["Content-Type", "text/plain", "X-One", "1"]],
  ["repeated list field joins with a comma", ["Vary", "a", "vary", "b", "VARY", "c"]],
  ["set-cookie stays a list", ["Set-Cookie", "a=1", "Set-Cookie", "b=2"]],
  ["cookie joins with a semicolon", ["Cookie", "a=1", "Cookie", "b=2"]],
  ["single-valued fields keep the first", ["Location", "/a", "Location", "/b", "ETag", '"1"', "ETag", '"2"']],
  ["latin1 bytes", ["X-Name", "caf\xe9"]],
  ["empty value", ["X-Empty", ""]],
];

async function nodeHeaders(raw: string[]): Promise<http.IncomingHttpHeaders> {
  const srv = net.createServer((s) => {
    s.on("error", () => undefined);
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n";
    for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
    s.end(Buffer.from(`${head}\r\n`, "latin1"));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  try {
    return await new Promise((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port: (srv.address() as AddressInfo).port, agent: false }, (res) => {
          res.resume();
          const h = { ...res.headers };
          delete h["content-length"];
          resolve(h);
        })
        .on("error", reject);
    });
  } finally {
    srv.close();
  }
}

describe("headersFromRaw", () => {
  it.each(HEADS)("%s: the same object as Node's parser", async (_name, raw) => {
    const expected = await nodeHeaders(raw);
    const buffers = raw.map((v) => Buffer.from(v, "latin1"));
    expect({ ...headersFromRaw(buffers) }).toEqual(expected);
  });
});
