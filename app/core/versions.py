"""Version vectors: which device changed a file how many times.

They make the seed's "newest timestamp wins" sound: a change made after seeing the
other side's version dominates it and wins outright; only changes made without
seeing each other are concurrent, and only those can be conflicts.
"""

from __future__ import annotations

from enum import Enum

import msgpack

Vector = dict[str, int]


class Order(Enum):
    EQUAL = "equal"
    NEWER = "newer"  # a has seen everything b has, and more
    OLDER = "older"
    CONCURRENT = "concurrent"


def compare(a: Vector, b: Vector) -> Order:
    a_more = any(n > b.get(d, 0) for d, n in a.items())
    b_more = any(n > a.get(d, 0) for d, n in b.items())
    if a_more and b_more:
        return Order.CONCURRENT
    if a_more:
        return Order.NEWER
    if b_more:
        return Order.OLDER
    return Order.EQUAL


def merge(a: Vector, b: Vector) -> Vector:
    out = dict(a)
    for d, n in b.items():
        if n > out.get(d, 0):
            out[d] = n
    return out


def bump(v: Vector, device: str) -> Vector:
    """The vector of a new local change: above everything seen so far, counted for us."""
    out = dict(v)
    out[device] = max(v.values(), default=0) + 1
    return out


def encode(v: Vector) -> bytes:
    """Canonical bytes (sorted keys), so equal vectors compare equal inside SQLite."""
    return msgpack.packb(sorted(v.items()), use_bin_type=True)


def decode(b: bytes) -> Vector:
    return {d: n for d, n in msgpack.unpackb(b, raw=False)}
