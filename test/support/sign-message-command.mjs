// A wallet-auth sign command for tests: message bytes on stdin, lowercase hex Ed25519
// signature on stdout. The key comes from the file named by SIGN_SECRET_FILE.
import { readFileSync } from "node:fs";
import { Keypair } from "@stellar/stellar-sdk";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const kp = Keypair.fromSecret(readFileSync(process.env.SIGN_SECRET_FILE ?? "", "utf8").trim());
process.stdout.write(kp.sign(Buffer.concat(chunks)).toString("hex"));
