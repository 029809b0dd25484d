"""A legacy-style stoka client: plain `requests`, proxy taken from HTTP_PROXY.

usage: stoka_requests.py BASE_URL PREFIX WALLET_ADDRESS
       stoka_requests.py --one METHOD URL
Prints one JSON line: the result of each step of the common scenario (or of the one request).
"""
import base64
import json
import sys

import requests


def result(name, r):
    return {
        "step": name,
        "status": r.status_code,
        "paid": r.headers.get("X-Stoka-Proxy-Paid"),
        "tx": r.headers.get("X-Stoka-Proxy-Tx"),
        "body_b64": base64.b64encode(r.content).decode("ascii"),
    }


if sys.argv[1] == "--one":
    r = requests.request(sys.argv[2], sys.argv[3], timeout=30)
    print(json.dumps([result("one", r)]))
    sys.exit(0)

base, prefix, wallet = sys.argv[1], sys.argv[2], sys.argv[3]
steps = [
    ("manifest", "GET", "/.well-known/stoka.json", {}, None),
    ("store", "POST", "/v1/store", {"X-Stoka-Key": prefix + "-blob", "Content-Type": "application/octet-stream"}, b"a" * 42),
    ("retrieve", "GET", "/v1/retrieve/" + prefix + "-blob", {}, None),
    ("update", "PUT", "/v1/object/" + prefix + "-blob", {"X-Stoka-TTL-Seconds": "86400"}, b"new"),
    ("push", "POST", "/v1/queue/" + wallet + "/" + prefix + "-topic/push", {}, b"hello mailbox"),
    ("pop", "POST", "/v1/queue/" + prefix + "-topic/pop", {}, None),
    ("delete", "DELETE", "/v1/object/" + prefix + "-blob", {}, None),
]
out = []
with requests.Session() as s:
    for name, method, path, headers, body in steps:
        r = s.request(method, base + path, headers=headers, data=body, timeout=30)
        out.append(result(name, r))
print(json.dumps(out))
