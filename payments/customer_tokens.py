"""
Customer session tokens: short-lived JWTs (RFC 7519, HS256) that a merchant's backend mints
with its secret key and hands to its own frontend, so that a buyer can read their own
payments without the merchant's key ever leaving the merchant's server.

The token is self-contained and nothing is stored: reading one costs no query beyond
loading the customer. The price is that a single token cannot be revoked before it
expires, which is why the lifetime (`CUSTOMER_SESSION_TTL_SECONDS`) is short and bounded.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone

from payments.models import Customer

ALGORITHM = "HS256"
ISSUER = "payments-platform"
AUDIENCE = "payments-api:v1:customer-session"
# Our web processes share NTP-synced clocks; a few seconds absorb the skew between the one
# that minted a token and the one that reads it, without stretching a lifetime noticeably.
CLOCK_SKEW = timedelta(seconds=5)
# Three base64url parts of a JSON header (always `{"…`, hence `eyJ`). The signature part may
# be empty so that an unsigned (`alg: none`) token is refused as a bad session, not taken
# for a malformed API key. Ours are ~350 characters; anything far longer is not ours.
_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_MAX_LENGTH = 2048
_KEY_PURPOSE = b"customer-session-token"


class CustomerTokenInvalid(Exception):
    """The token is malformed, forged, expired, or not one of ours."""


@dataclass(frozen=True)
class CustomerTokenClaims:
    customer_id: str
    merchant_id: str
    livemode: bool
    expires_at: datetime
    token_id: str


def looks_like_customer_token(raw: str) -> bool:
    """Whether a bearer value is shaped like a JWT (API keys never are: `sk_…`, `pk_…`)."""
    return len(raw) <= _MAX_LENGTH and _SHAPE.fullmatch(raw) is not None


def customer_token_mint(*, customer: Customer, livemode: bool) -> tuple[str, datetime]:
    """A token that reads `customer`'s own data in one mode, and when it expires."""
    # Whole seconds, so the `expires_at` we answer with is exactly the token's `exp`.
    issued_at = timezone.now().replace(microsecond=0)
    expires_at = issued_at + timedelta(seconds=settings.CUSTOMER_SESSION_TTL_SECONDS)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": customer.pk,
        "mer": customer.merchant_id,
        "live": livemode,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, _signing_keys()[0], algorithm=ALGORITHM), expires_at


def customer_token_read(token: str) -> CustomerTokenClaims:
    """The verified claims of `token`; raises `CustomerTokenInvalid` for anything else."""
    for key in _signing_keys():
        try:
            claims = jwt.decode(
                token,
                key,
                # Exactly one algorithm: never `none`, never one the token itself picks.
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=CLOCK_SKEW,
                options={
                    "require": ["iss", "aud", "sub", "mer", "live", "iat", "exp", "jti"],
                    "strict_aud": True,
                },
            )
        except jwt.InvalidSignatureError:
            continue  # perhaps signed before a SECRET_KEY rotation: try the older key
        except jwt.InvalidTokenError as exc:
            raise CustomerTokenInvalid(str(exc)) from exc
        if not isinstance(claims["mer"], str) or not isinstance(claims["live"], bool):
            raise CustomerTokenInvalid("Malformed claims.")
        return CustomerTokenClaims(
            customer_id=claims["sub"],
            merchant_id=claims["mer"],
            livemode=claims["live"],
            expires_at=datetime.fromtimestamp(claims["exp"], tz=UTC),
            token_id=str(claims["jti"]),
        )
    raise CustomerTokenInvalid("Signature verification failed.")


def _signing_keys() -> list[bytes]:
    """
    The current key first, then those of `SECRET_KEY_FALLBACKS`, so tokens survive a key
    rotation until they expire. Each is derived for this one purpose (domain separation):
    a token's signature can never pass for a session cookie, a sandbox webhook or any
    other thing SECRET_KEY signs, nor the reverse.
    """
    raw_keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [hmac.new(raw.encode(), _KEY_PURPOSE, hashlib.sha256).digest() for raw in raw_keys]
