"""Verifies a stoka-proxy webhook signature the way docs/webhooks.md tells receivers to.

usage: verify_webhook.py SECRET HEADER < body   (exit 0: valid, 1: not)
"""
import hashlib
import hmac
import sys
import time


def verify(header: str, body: bytes, secret: str, tolerance: int = 300) -> bool:
    parts = [p.strip().split("=", 1) for p in header.split(",") if "=" in p]
    ts = [v for k, v in parts if k == "t"]
    sigs = [v for k, v in parts if k == "v1"]
    if len(ts) != 1 or not ts[0].isdigit() or not sigs:
        return False
    if abs(time.time() - int(ts[0])) > tolerance:
        return False
    mac = hmac.new(secret.encode(), ts[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(mac, s) for s in sigs)


if __name__ == "__main__":
    sys.exit(0 if verify(sys.argv[2], sys.stdin.buffer.read(), sys.argv[1]) else 1)
