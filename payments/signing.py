"""
Webhook signatures in the Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`,
`webhook-signature`; secrets `whsec_<base64>`), so that any receiver can verify with any
Standard Webhooks library. The sandbox signs what it sends us this way too.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook


class SignatureError(Exception):
    pass


def webhook_secret_generate() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_secret_derive(master: str, label: str) -> str:
    digest = hmac.new(master.encode(), f"webhook-secret:{label}".encode(), hashlib.sha256)
    return "whsec_" + base64.b64encode(digest.digest()).decode()


def webhook_headers(secret: str, message_id: str, body: str, at: datetime | None = None) -> dict:
    at = (at or datetime.now(UTC)).astimezone(UTC)  # the library signs the clock time as UTC
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }


def webhook_verify(secret: str, body: bytes, headers: Mapping[str, str]) -> dict:
    """The parsed body, if the signature is right and no more than 5 minutes old."""
    try:
        return Webhook(secret).verify(body, dict(headers))
    except Exception as exc:  # the library raises several types for malformed input
        raise SignatureError(str(exc) or type(exc).__name__) from None
