"""Forbidden phrases (违规用语), counted in agent message text at the ingest edge.

Only the count goes on, as the event's ``violations``; the text itself is removed before the
event is produced, so no topic, changelog or metric ever holds it. Aho-Corasick (pyahocorasick)
matches any number of phrases in one pass over the text, Chinese included.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import ahocorasick

from cs_pulse.settings import forbidden_phrases_config


class PhraseMatcher:
    def __init__(self, phrases: Iterable[str]) -> None:
        words = {p.strip().lower() for p in phrases if p.strip()}
        self.phrases = sorted(words)
        self._automaton: Any = None
        if words:
            automaton = ahocorasick.Automaton()
            for word in words:
                automaton.add_word(word, word)
            automaton.make_automaton()
            self._automaton = automaton

    def count(self, text: str) -> int:
        """Occurrences of any phrase (case-insensitive; overlapping occurrences each count)."""
        if self._automaton is None or not text:
            return 0
        return sum(1 for _ in self._automaton.iter(text.lower()))

    def redact(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event without ``text``; an agent message's matches are added to ``violations``."""
        if "text" not in event:
            return event
        out = {k: v for k, v in event.items() if k != "text"}
        text = event["text"]
        if out.get("type") == "message.sent" and out.get("sender") == "agent" and \
                isinstance(text, str):
            found = self.count(text)
            if found:
                out["violations"] = int(out.get("violations") or 0) + found
        return out


@lru_cache(maxsize=1)
def configured() -> PhraseMatcher:
    """The matcher for ``CS_PULSE_FORBIDDEN_PHRASES`` (none configured: matches nothing)."""
    return PhraseMatcher(forbidden_phrases_config())
