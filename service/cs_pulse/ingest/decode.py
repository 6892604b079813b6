"""Decode and validate raw Kafka values into domain events, or a rejection reason.

Never raises on bad input: every failure becomes a ``Rejected`` with a short, bounded reason
(used as the ``reason`` label of ``cs_events_rejected_total`` and the DLQ header).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from cs_pulse.domain.model import Event

MAX_EVENT_BYTES = 64 * 1024
MAX_FUTURE_SKEW_SECONDS = 300.0
REASONS = (
    "oversized", "malformed_json", "not_object", "unknown_type", "missing_field",
    "invalid_field", "future_timestamp", "ancient_timestamp",
)


def schemas_dir() -> Path:
    env = os.environ.get("CS_PULSE_SCHEMAS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "schemas"


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


def _load_validators() -> dict[str, Callable[[Any], Any]]:
    validators: dict[str, Callable[[Any], Any]] = {}
    for path in sorted(schemas_dir().glob("*.v1.json")):
        schema = orjson.loads(path.read_bytes())
        validators[schema["title"]] = fastjsonschema.compile(schema)
    if not validators:
        raise RuntimeError(f"no event schemas found in {schemas_dir()}")
    return validators


class Decoder:
    """Compiled validators for every event type; ``decode`` is the only entry point."""

    def __init__(self, now: Callable[[], float] | None = None) -> None:
        import time

        self.validators = _load_validators()
        self.now = now or time.time

    @property
    def types(self) -> list[str]:
        return sorted(self.validators)

    def decode(self, raw: bytes | None) -> Event | Rejected:
        if raw is None:
            return Rejected("malformed_json", "empty value")
        if len(raw) > MAX_EVENT_BYTES:
            return Rejected("oversized", f"{len(raw)} bytes > {MAX_EVENT_BYTES}")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return Rejected("malformed_json", str(exc)[:200])
        return self.validate(data)

    def validate(self, data: Any) -> Event | Rejected:
        if not isinstance(data, dict):
            return Rejected("not_object", type(data).__name__)
        type_ = data.get("type")
        validator = self.validators.get(type_) if isinstance(type_, str) else None
        if validator is None:
            return Rejected("unknown_type", repr(data.get("type"))[:100])
        try:
            validator(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            # Our schemas use anyOf only for "one of these fields is required".
            missing = "must contain" in exc.message or exc.rule == "anyOf"
            reason = "missing_field" if missing else "invalid_field"
            if exc.name == "data.ts" and "bigger than or equal" in exc.message:
                reason = "ancient_timestamp"
            elif exc.name == "data.ts" and "smaller than or equal" in exc.message:
                reason = "future_timestamp"
            return Rejected(reason, exc.message[:200])
        if data["ts"] / 1000.0 > self.now() + MAX_FUTURE_SKEW_SECONDS:
            return Rejected("future_timestamp", f"ts {data['ts']} ahead of worker clock")
        return Event.from_dict(data)
