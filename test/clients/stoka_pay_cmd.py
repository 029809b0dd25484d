"""A stoka client that pays through an external signer, as stoka-agent's CallbackPaymentSigner does.

usage: stoka_pay_cmd.py BASE_URL KEY [--single]
The payment command comes from X_PAYMENT_CMD. POSTs a store; on the 402 runs the command in a
subprocess with the requirements JSON on stdin (the 402's JSON, or with --single its first
requirement alone; for the x402 v2 header form, PAYMENT-REQUIRED decoded), then retries once
with the header it printed. Prints one JSON line: what happened at each step.
"""
import base64
import json
import os
import subprocess
import sys

import requests

base, key = sys.argv[1], sys.argv[2]
single = "--single" in sys.argv[3:]
body = b"paid by a command " * 3
headers = {"X-Stoka-Key": key, "Content-Type": "application/octet-stream"}
out = {}
with requests.Session() as s:
    first = s.post(base + "/v1/store", headers=headers, data=body, timeout=30)
    out["first"] = first.status_code
    if first.status_code != 402:
        print(json.dumps(out))
        sys.exit(0)
    if "PAYMENT-REQUIRED" in first.headers:
        required = json.loads(base64.b64decode(first.headers["PAYMENT-REQUIRED"]))
        header_name = "PAYMENT-SIGNATURE"
    else:
        required = first.json()
        header_name = "X-PAYMENT"
    stdin = required["accepts"][0] if single else required
    cmd = subprocess.run(
        os.environ["X_PAYMENT_CMD"],
        shell=True,
        input=json.dumps(stdin).encode(),
        capture_output=True,
        timeout=60,
    )
    out["cmd_exit"] = cmd.returncode
    out["cmd_stderr"] = cmd.stderr.decode()
    out["cmd_stdout_lines"] = len(cmd.stdout.decode().splitlines())
    if cmd.returncode != 0:
        print(json.dumps(out))
        sys.exit(0)
    paid = s.post(
        base + "/v1/store",
        headers={**headers, header_name: cmd.stdout.decode().strip()},
        data=body,
        timeout=30,
    )
    out["status"] = paid.status_code
    out["receipt"] = paid.headers.get("X-PAYMENT-RESPONSE") or paid.headers.get("PAYMENT-RESPONSE")
print(json.dumps(out))
