import https from "node:https";

/**
 * A direct call to the signer role's API (src/proxy/signer-server.ts), as a pod, possibly a
 * hostile one, would make it: bearer token, JSON body (GET without one), the signer's own CA.
 */
export function callSignerApi(
  signerUrl: string,
  caPem: string,
  token: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, signerUrl),
      {
        method: body === undefined ? "GET" : "POST",
        agent: new https.Agent({ ca: caPem }),
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString("utf8")));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text || "{}") }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
