import net from "node:net";

/**
 * Bytes a real client would never send, written straight to the proxy: an odd request line, a
 * CONNECT target curl refuses to build, or a request inside a tunnel. Returns everything the
 * proxy answered until it closed or went quiet (bounded).
 */
export async function rawExchange(
  port: number,
  chunks: string[],
  opts: { quietMs?: number; maxMs?: number } = {},
): Promise<string> {
  const quietMs = opts.quietMs ?? 400;
  const maxMs = opts.maxMs ?? 5_000;
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let text = "";
    let idle: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(idle);
      clearTimeout(hard);
      socket.destroy();
      resolve(text);
    };
    const hard = setTimeout(done, maxMs);
    const rearm = () => {
      clearTimeout(idle);
      idle = setTimeout(done, quietMs);
    };
    let next = 0;
    const sendNext = () => {
      const chunk = chunks[next++];
      if (chunk !== undefined) socket.write(chunk);
    };
    socket.on("connect", () => {
      sendNext();
      rearm();
    });
    socket.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      // The next chunk goes once the previous answer (e.g. "200 Connection Established") is in.
      if (next < chunks.length && /\r\n\r\n/.test(text)) sendNext();
      rearm();
    });
    socket.on("error", done);
    socket.on("close", done);
  });
}

/** The status code of the last HTTP response in `text`, or 0 when there is none. */
export function lastStatus(text: string): number {
  const all = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)];
  return Number(all.at(-1)?.[1] ?? 0);
}
