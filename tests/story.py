"""Hand-written event stories run through the whole engine in process (all three stages), read
back as /metrics samples. Times are seconds after ``factory.T0``; events are fed in the order
written (arrival order), one Kafka partition unless given."""

from __future__ import annotations

from typing import Any

import orjson

from cs_pulse.settings import Settings
from cs_pulse.worker.inprocess import InProcess, Sample
from factory import T0, event_dict

Record = tuple[int, int, bytes | None, bytes | None]


class Story:
    def __init__(self, grace: float = 5.0, shops: dict[str, Any] | None = None) -> None:
        self.settings = Settings(grace_seconds=grace, partitions=4, shops=shops or {})
        self.records: list[Record] = []
        self._offsets: dict[int, int] = {}
        self.releases: list[tuple[int, int]] = []

    def add(self, type_: str, t: float, conv: str = "c1", *, partition: int = 0,
            **fields: Any) -> dict[str, Any]:
        d = event_dict(type_, t, conv, **{k: v for k, v in fields.items() if v is not None})
        for k in [k for k, v in fields.items() if v is None]:   # field=None: leave it out
            d.pop(k, None)
        self.raw(orjson.dumps(d), partition)
        return d

    def raw(self, value: bytes, partition: int = 0) -> None:
        offset = self._offsets.get(partition, 0)
        self._offsets[partition] = offset + 1
        self.records.append((partition, offset, None, value))

    def cust(self, t: float, conv: str = "c1", chars: int = 10, **kw: Any) -> None:
        self.add("message.sent", t, conv, sender="customer", chars=chars, **kw)

    def agent(self, t: float, conv: str = "c1", agent: str = "a1", chars: int = 20,
              **kw: Any) -> None:
        self.add("message.sent", t, conv, sender="agent", agent_id=agent, chars=chars, **kw)

    def bot(self, t: float, conv: str = "c1", **kw: Any) -> None:
        self.add("message.sent", t, conv, sender="bot", chars=5, **kw)

    def status(self, t: float, agent: str, status: str, partition: int = 1, **kw: Any) -> None:
        self.add("agent.status", t, "", agent_id=agent, status=status, partition=partition,
                 **kw)

    def run(self, now: float) -> Metrics:
        """Every record fed in order, every partition released with the reading instant as
        its clock (README: a reading counts as a release), read at T0 + ``now``."""
        ip = InProcess(self.settings)
        ip.feed(self.records)
        ip.release_all(T0 + now)
        self.releases = [(p, n - 1) for p, n in self._offsets.items()]
        return Metrics(ip.samples(T0 + now))


class Metrics:
    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def get(self, name: str, **labels: str) -> float | None:
        """The one sample named ``name`` whose labels include ``labels`` (None if absent)."""
        found = [v for n, lab, v in self.samples
                 if n == name and all(lab.get(k) == want for k, want in labels.items())]
        assert len(found) <= 1, f"{name} {labels}: {len(found)} samples"
        return found[0] if found else None

    def __call__(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(v for n, lab, v in self.samples
                   if n == name and all(lab.get(k) == want for k, want in labels.items()))
