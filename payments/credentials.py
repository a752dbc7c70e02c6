"""
API key material: making keys, recognising them and hashing them for storage.

A key reads `sk_test_<32 base62 chars>`; the part before the random tail tells its kind
and mode, so a client (and a log reader) can tell a secret key from a publishable one.
"""

import hashlib
import hmac
import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_RANDOM_LENGTH = 32  # about 190 bits
KEY_PATTERN = re.compile(r"^(?P<type>sk|pk)_(?P<mode>test|live)_(?P<random>[A-Za-z0-9]{24,64})$")
DISPLAY_PREFIX_LENGTH = 12  # "sk_test_" plus four characters


def key_prefix(kind: str, livemode: bool) -> str:
    return f"{'sk' if kind == 'secret' else 'pk'}_{'live' if livemode else 'test'}_"


def key_generate(kind: str, livemode: bool) -> str:
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    return key_prefix(kind, livemode) + tail


def key_derive(kind: str, livemode: bool, *, secret: str, label: str) -> str:
    """
    A key that is the same every time for one installation (one SECRET_KEY) and label.

    Used by `seed_demo` so that running it again prints the same working demo key without
    ever storing the key itself; anyone who can derive it already holds SECRET_KEY.
    """
    digest = hmac.new(secret.encode(), f"demo-key:{kind}:{livemode}:{label}".encode(), "sha256")
    number = int.from_bytes(digest.digest(), "big")
    tail = []
    for _ in range(_RANDOM_LENGTH):
        number, index = divmod(number, len(_ALPHABET))
        tail.append(_ALPHABET[index])
    return key_prefix(kind, livemode) + "".join(tail)


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_looks_valid(raw_key: str) -> bool:
    return bool(KEY_PATTERN.match(raw_key))
