from datetime import UTC, datetime

from payments import ids


def test_ids_made_in_a_burst_are_ordered_unique_and_unguessable():
    burst = [ids.ulid() for _ in range(5000)]

    assert burst == sorted(burst) and len(set(burst)) == len(burst)
    values = [int.from_bytes(_decode(u), "big") for u in burst]
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    # Neighbours never differ by a small, guessable step, even within one millisecond.
    assert min(steps) > 2**32


def test_floor_before_1970_is_the_smallest_id():
    assert ids.ulid_floor(datetime(1900, 1, 1, tzinfo=UTC)) == "0" * 26


def _decode(value: str) -> bytes:
    number = 0
    for char in value:
        number = number * 32 + ids._CROCKFORD.index(char)
    return number.to_bytes(17, "big")
