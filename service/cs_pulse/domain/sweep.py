"""Housekeeping a share at a time: a sweep that looks at a fixed number of keys per run costs
the same whatever the state's size (at 100,000 conversations, forgetting old customer records
and window slots in one pass took half a second every 10 s, on the event loop). Forgetting
later changes no answer: readings ignore what lies before their windows and joins what lies
past their horizons; only memory waits a little longer."""

from __future__ import annotations

from collections.abc import Callable, Iterable


class RoundRobin:
    """The keys of some state, ``budget`` at a time: every key present at the start of a round
    is taken once in it (keys gone since are the caller's to skip); a new round takes the keys
    present then. ``budget`` 0: all the keys, every time."""

    def __init__(self) -> None:
        self._round: list[str] = []

    def take(self, keys: Callable[[], Iterable[str]], budget: int) -> list[str]:
        if budget <= 0:
            self._round = []
            return list(keys())
        if not self._round:
            self._round = list(keys())
        taken = self._round[-budget:]
        del self._round[-budget:]
        return taken
