"""
Public object ids: a type prefix and a ULID (`cus_01JD3Z…`).

ULIDs start with the creation time in milliseconds, so ids sort in creation order. That
lets cursor pagination walk the primary key index alone, and keeps inserts at the right
edge of the index instead of scattering them across it.
"""

import os
import secrets
import threading
import time

from django.utils.deconstruct import deconstructible

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_lock = threading.Lock()
_last = 0


def ulid() -> str:
    """
    Return a 26-character ULID: 48 bits of milliseconds, then 80 random bits.

    Within one process ids are strictly increasing even inside one millisecond (the
    random part grows by a random step), so objects made in a burst still list in
    creation order, and every id keeps at least 64 unpredictable bits.
    """
    global _last
    with _lock:
        value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
        if value <= _last:
            # Same millisecond: stay ordered, but step by a random 64-bit amount so that
            # an id (a pay link is one) never reveals its neighbours.
            value = _last + 1 + secrets.randbits(64)
        _last = value
    return _encode(value)


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 0x1F])
        value >>= 5
    return "".join(reversed(chars))


@deconstructible
class PrefixedId:
    """A model-field default that makes `<prefix>_<ulid>` ids; safe in migrations."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self) -> str:
        return f"{self.prefix}_{ulid()}"

    def __eq__(self, other):
        return isinstance(other, PrefixedId) and other.prefix == self.prefix

    def __hash__(self):
        return hash(self.prefix)


def ulid_floor(moment) -> str:
    """The smallest ULID for a moment: ids made at or after it compare >= this string."""
    # Before 1970 there are no ids: the smallest one is the floor.
    return _encode(max(0, int(moment.timestamp() * 1000)) << 80)


def ulid_at(moment) -> str:
    """A ULID for a past moment (backfills and demo data whose ids must match their time)."""
    return _encode((int(moment.timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10), "big"))
