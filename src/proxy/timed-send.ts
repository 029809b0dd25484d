import { UpstreamError } from "../http/upstream-client.js";
import type { UpstreamAnswer } from "../http/upstream-client.js";
import type { RequestRecord } from "../observability/request-record.js";

/** Sends once, recording how long the headers took and what kind of failure happened. */
export async function timedSend(
  record: RequestRecord,
  send: () => Promise<UpstreamAnswer>,
): Promise<UpstreamAnswer> {
  const started = process.hrtime.bigint();
  try {
    const res = await send();
    (record.upstreamSeconds ??= []).push(Number(process.hrtime.bigint() - started) / 1e9);
    if ((res.statusCode ?? 0) >= 500) record.upstreamError = "status_5xx";
    return res;
  } catch (e) {
    if (e instanceof UpstreamError) record.upstreamError = e.kind;
    throw e;
  }
}
