#!/usr/bin/env python3
"""Verify a Strata webhook request (Standard Webhooks signatures), stdlib only.

    verify(secret, headers, body) -> the event (a dict), or raises ValueError

Usage as a command, for a saved request:

    WEBHOOK_SECRET=whsec_... python3 verify_webhook.py ID TIMESTAMP SIGNATURE < body.json
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

TOLERANCE_SECONDS = 5 * 60


def verify(secret, headers, body):
    """Checks the signature and the timestamp of a request; returns its event."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise ValueError("timestamp too old or too new")
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # Several signatures while a secret is being rotated: one must match.
    for signature in headers["webhook-signature"].split(" "):
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise ValueError("no valid signature")


if __name__ == "__main__":
    msg_id, timestamp, signature = sys.argv[1:4]
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    try:
        event = verify(os.environ["WEBHOOK_SECRET"], headers, sys.stdin.buffer.read())
    except ValueError as e:
        sys.exit(f"rejected: {e}")
    # Deduplicate on event_id: a retried event keeps its id.
    print(event["event_id"], event["event_type"])
