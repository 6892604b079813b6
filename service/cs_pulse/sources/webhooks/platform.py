"""What one chat platform gives the webhook receiver: its signature scheme and a pure mapping.

The receiver (``receiver.py``) owns everything HTTP: limits, the replay memory, the spool,
counters. A platform module (``chatwoot.py``, ``intercom.py``, ...) owns only what differs
between platforms, as two functions of the delivery and nothing else (no clock of its own, no
I/O, no state):

* ``authenticate(delivery, now, window)``: is it authentic and fresh? (``Authentic``, with how
  long it stays fresh and any signature-derived replay keys, or ``Refused``);
* ``map(payload, delivery)``: the verified JSON object → cs-pulse events (``Mapped``), or
  ``Malformed`` for a body that is not what the platform sends.

Event ids are derived from the platform's own ids (message, part, event), never from the
delivery, so a redelivery, or the same change reported by two webhooks, produces the same
events and the worker applies them once.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from cs_pulse.settings import Settings

Event = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TS_RANGE = (631_152_000_000, 4_102_444_800_000)   # schemas/*.json: ts, 1990..2100
LABEL = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")   # schemas/*.json: a label value
Payload = dict[str, Any]
RefusalReason = Literal["unsigned", "stale", "forged"]


class Malformed(ValueError):
    """The body is valid JSON but not what the platform sends (400)."""


@dataclass(frozen=True)
class Delivery:
    """One request as the platform sent it."""

    headers: Mapping[str, str]     # case-insensitive (aiohttp's CIMultiDictProxy)
    body: bytes
    received_ms: int               # the receiver's clock when the body was complete
    token: str | None = None       # the URL's last segment: POST /<platform>/<token>


@dataclass(frozen=True)
class Authentic:
    # Until when (epoch s) this very request would still be taken: its replays are
    # remembered that long (None: the receiver's freshness window from now).
    fresh_until: float | None
    keys: tuple[str, ...] = ()     # replay keys from the signature (one per signed request)


@dataclass(frozen=True)
class Refused:
    reason: RefusalReason
    detail: str


@dataclass(frozen=True)
class Mapped:
    kind: str                      # the platform's event type (a label: one of ``kinds``)
    events: list[Event] = field(default_factory=list)
    delivery_ids: tuple[str, ...] = ()   # the platform's delivery / notification / event ids


class Platform(Protocol):
    """One chat platform (one module of this package, one route)."""

    @property
    def name(self) -> str:
        """The route (POST /<name>) and the ``platform`` label."""

    @property
    def kinds(self) -> frozenset[str]:
        """The platform's event types counted by name; any other is counted as "other"."""

    def authenticate(self, delivery: Delivery, now: float, window: float
                     ) -> Authentic | Refused: ...

    def map(self, payload: Payload, delivery: Delivery) -> Mapped: ...


PlatformFactory = Callable[[Settings], "Platform | None"]


# --- helpers every platform uses ---------------------------------------------------------------

def hmac_hex(algorithm: str, secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, getattr(hashlib, algorithm)).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two header values."""
    return hmac.compare_digest(a.encode(), b.encode())


def fresh(sent_at: float, now: float, window: float) -> bool:
    return abs(now - sent_at) <= window   # False for NaN and infinities too


def epoch_ms(value: Any) -> int:
    """Epoch seconds (a JSON number) or an ISO-8601 time with ``Z`` or an offset (up to nine
    fractional digits) → epoch milliseconds, truncated; ``Malformed`` outside the years the
    event schemas take (1990-2100)."""
    ms = _epoch_ms(value)
    if not TS_RANGE[0] <= ms <= TS_RANGE[1]:
        raise Malformed(f"a time outside 1990-2100: {value!r}"[:200])
    return ms


def _epoch_ms(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Malformed(f"not a time: {value!r}"[:200])
    if isinstance(value, int):
        return value * 1000
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Malformed(f"not a time: {value!r}")
        return math.floor(Decimal(repr(value)) * 1000)   # 0.123 s is 123 ms, not 122
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Malformed(f"not a time: {value!r}"[:200]) from None
    if moment.tzinfo is None:
        raise Malformed(f"a time without a time zone: {value!r}"[:200])
    return (moment - EPOCH) // timedelta(milliseconds=1)


def label(prefix: str, value: Any) -> str:
    """A label value from a platform id: ``prefix-<id>``, ids as strings (JSON numbers and
    strings alike: 42 and "42" are the same id). ``Malformed`` if the result is not a label
    the worker takes (1-64 of ``A-Z a-z 0-9 _ . : @ -``)."""
    if isinstance(value, bool) or value is None or value == "":
        raise Malformed(f"{prefix}: missing id")
    if isinstance(value, float):
        if not value.is_integer():
            raise Malformed(f"{prefix}: not an id: {value!r}")
        value = int(value)
    if not isinstance(value, int | str):
        raise Malformed(f"{prefix}: not an id: {value!r}"[:200])
    text = f"{prefix}-{value}"
    if not LABEL.fullmatch(text):
        raise Malformed(f"{prefix}: id {value!r} does not make a label"[:200])
    return text


def shop_label(value: Any) -> str:
    """A shop id (a configured name, or a platform's account id) as the worker takes it."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not LABEL.fullmatch(text):
        raise Malformed(f"shop {value!r} is not a label (1-64 of A-Z a-z 0-9 _ . : @ -)"[:200])
    return text


def word(value: Any) -> str | None:
    """A JSON string field used as a keyword (a type, a status), None for anything else: a
    platform's enums are compared and looked up, never trusted to be strings."""
    return value if isinstance(value, str) else None


def obj(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``Malformed``."""
    if not isinstance(value, dict):
        raise Malformed(f"{what}: not an object")
    return value


def opt_obj(value: Any) -> dict[str, Any]:
    """A JSON object, or {} for null / absent / anything else."""
    return value if isinstance(value, dict) else {}
