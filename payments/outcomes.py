"""
The one explicit hook through which payments announce what happened to the apps that
build on them (merchant callbacks, billing, subscriptions), without importing them.

`announce` is called inside the transaction that made the change; listeners write their
own rows in that same transaction (a transactional outbox), so an outcome is recorded
exactly when the change commits, never without it and never alone.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction


@dataclass(frozen=True)
class Outcome:
    type: str  # "payment.succeeded", "refund.failed", …
    merchant_id: str
    livemode: bool
    object_id: str
    data: dict  # the object as the API renders it, at this moment


_listeners: list[Callable[[Outcome], None]] = []


def listen(listener: Callable[[Outcome], None]) -> None:
    """Register a listener (from an AppConfig.ready); registering twice is harmless."""
    if listener not in _listeners:
        _listeners.append(listener)


def announce(outcome: Outcome) -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("Outcomes are announced inside the transaction of the change")
    for listener in _listeners:
        listener(outcome)


def announce_object(obj, event_type: str, serializer_class) -> None:
    """
    Announce an outcome about `obj` (anything with `merchant_id`, `livemode` and `pk`),
    with the object as `serializer_class` renders it for the API at this moment.
    """
    announce(
        Outcome(
            type=event_type,
            merchant_id=obj.merchant_id,
            livemode=obj.livemode,
            object_id=obj.pk,
            # Through JSON once, so listeners store plain values (times as strings).
            data=json.loads(json.dumps(serializer_class(obj).data)),
        )
    )
