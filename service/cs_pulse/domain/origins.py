"""Idempotence by origin: which upstream output a fact or record is.

An origin is ``(source, offset, index)``: the upstream stage partition that produced it (``"e3"``:
events partition 3, ``"c1"``: customers partition 1), the input offset it was produced at, and
its index there. An upstream partition's outputs reach one downstream partition in order, so
anything at or below the highest origin applied from that source is a re-send after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Origin = tuple[str, int, int]


@dataclass
class Origins:
    high_water: dict[str, list[int]] = field(default_factory=dict)

    def fresh(self, origin: Origin) -> bool:
        """True (and remembered) the first time; False for a re-sent one."""
        source, offset, index = origin
        hw = self.high_water.get(source)
        if hw is not None and (offset < hw[0] or (offset == hw[0] and index <= hw[1])):
            return False
        if hw is None:
            self.high_water[source] = [offset, index]
        else:   # in place: one list per source, not one per fact
            hw[0], hw[1] = offset, index
        return True
