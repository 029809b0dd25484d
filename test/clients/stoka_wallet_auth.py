"""Wallet-signed stoka routes from an app that knows nothing about signatures.

usage: stoka_wallet_auth.py BASE_URL PREFIX WALLET_ADDRESS
Stores a blob (paid), reads today's usage, binds a profile, pushes/pops/acks a message and
deletes the blob, all through HTTP_PROXY. Prints one JSON object.
"""
import json
import sys

import requests

base, prefix, wallet = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
with requests.Session() as s:
    r = s.post(base + "/v1/store", headers={"X-Stoka-Key": prefix}, data=b"z" * 42, timeout=30)
    out["store"] = r.status_code
    r = s.get(base + "/v1/me/usage", params={"days": "1"}, timeout=30)
    out["usage"] = {"status": r.status_code, "body": r.json()}
    r = s.post(base + "/v1/profile", json={"email": prefix + "@example.com"}, timeout=30)
    out["profile"] = {"status": r.status_code, "body": r.json()}
    r = s.post(base + "/v1/queue/" + wallet + "/" + prefix + "/push", data=b"job", timeout=30)
    out["push"] = r.status_code
    r = s.post(base + "/v1/queue/" + prefix + "/pop", timeout=30)
    out["pop"] = r.status_code
    receipt = r.headers.get("X-Stoka-Receipt", "")
    r = s.post(base + "/v1/queue/" + prefix + "/ack/" + receipt, timeout=30)
    out["ack"] = r.status_code
    r = s.delete(base + "/v1/object/" + prefix, timeout=30)
    out["delete"] = r.status_code
    r = s.get(base + "/v1/retrieve/" + prefix, timeout=30)
    out["retrieve_after_delete"] = r.status_code
print(json.dumps(out))
