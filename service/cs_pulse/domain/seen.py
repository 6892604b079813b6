"""Idempotence memory: the events already applied to a conversation, agent or customer, kept as
8-byte digests of their ids concatenated in one ``bytes`` (16 bytes for two events instead of
a list and two id strings, ~200 bytes).

Two different ids of one conversation (or one entity's last ``MAX_ENTITY_IDS``) share a 64-bit
digest with odds of about k² / 2⁶⁵ for k ids: ~10⁻¹³ for a thousand, negligible next to a
duplicate delivered at all.
"""

from __future__ import annotations

from hashlib import blake2b

DIGEST_BYTES = 8


def id_digest(event_id: str) -> bytes:
    # blake2b, never hash(): str hashes are randomised per process, and these digests go to the
    # changelog and are compared again after a recovery, in another process.
    return blake2b(event_id.encode(), digest_size=DIGEST_BYTES).digest()


def holds(digests: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is one of those concatenated in ``digests``."""
    at = digests.find(digest)
    while at != -1 and at % DIGEST_BYTES:   # a match across two neighbouring digests is none
        at = digests.find(digest, at + 1)
    return at != -1


def to_row(digests: bytes) -> str:
    """As stored in a changelog row: hex."""
    return digests.hex()


def from_row(value: str | list[str]) -> bytes:
    """From a changelog row: hex digests, or the event ids themselves (rows written before
    digests), digested now."""
    if isinstance(value, str):
        return bytes.fromhex(value)
    return b"".join(id_digest(event_id) for event_id in value)
