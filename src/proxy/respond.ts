import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import type { UpstreamAnswer } from "../http/upstream-client.js";
import { appendVia, withoutHopByHop } from "../http/hop-by-hop.js";

/**
 * Writing upstream answers to the app: streamed, or buffered with the content length
 * recomputed; hop-by-hop headers dropped, our Via added. Error answers are error-answers.ts's.
 */

/**
 * Drops `X-Stoka-Proxy-*` from an upstream's headers: they say what this proxy did (paid,
 * which tx, why it refused), so only the proxy may write them.
 */
export function stripOwnHeaders(headers: IncomingHttpHeaders): void {
  for (const k of Object.keys(headers)) if (k.toLowerCase().startsWith("x-stoka-proxy-")) delete headers[k];
}

/** Response headers for the app: upstream's minus hop-by-hop and minus ours, plus ours. */
export function responseHeaders(
  upstream: IncomingHttpHeaders,
  extra: Record<string, string>,
  via?: string,
): Record<string, string | string[]> {
  // One copy: this runs for every answer the paid host's path streams.
  const out = withoutHopByHop(upstream, "x-stoka-proxy-") as Record<string, string | string[]>;
  if (via) appendVia(out, via);
  for (const k in extra) out[k] = extra[k] as string;
  return out;
}

/** Streams an upstream response to the app. */
export function pipeUpstream(
  upstream: UpstreamAnswer,
  res: ServerResponse,
  extra: Record<string, string>,
  via?: string,
): void {
  res.writeHead(upstream.statusCode ?? 502, responseHeaders(upstream.headers, extra, via));
  upstream.on("error", () => res.destroy());
  // The app went away before the end: the pipe only lets go of the answer; its connection
  // must go too, or it stays busy in the pool until the upstream gives up.
  if (res.destroyed) return void upstream.destroy();
  res.once("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  if (upstream.sinkTo) upstream.sinkTo(res);
  else upstream.pipe(res);
}

/** Sends a buffered body with the upstream's headers (content-length recomputed). */
export function sendBuffered(
  res: ServerResponse,
  status: number,
  headers: IncomingHttpHeaders,
  body: Buffer,
  extra: Record<string, string>,
  via?: string,
): void {
  const h = responseHeaders(headers, extra, via);
  delete h["content-length"];
  h["content-length"] = String(body.length);
  res.writeHead(status, h);
  res.end(body);
}
