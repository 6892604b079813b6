"""The peer comparison (issue #18): a quix-streams job comparable to the cs-pulse pipeline, run
by ``bench.run`` on the same topic in the same run.

The job, with quix-streams' public API only:
  * stage 1, per conversation (the events topic is keyed by conversation id): a stateful step
    that remembers the first customer message's time and emits the first-response duration at
    the first agent message;
  * a repartition by queue (``group_by``) that every record goes through;
  * stage 2: a 10 s tumbling window (event time, the events' ``ts``; lateness as in cs-pulse,
    see ``GRACE``) per queue with the count of events, the count and the sum of first-response
    durations, each closed window written to an output topic.

Events/s through both stages: the clock starts at the first record consumed and stops when
stage 2 has processed all ``n`` records (counted in a stage-2 step, then the app stops).

quix-streams cannot share an environment with cs-pulse: every quixstreams release caps
pydantic-settings (3.28.1: <2.16; cs-pulse pins 2.16.3) and older ones also cap rich below
cs-pulse's 15.0.0. So the job runs in a subprocess under its own interpreter: ``.venv``'s own if
quixstreams imports there, else ``.cache/quix-venv`` (``INSTALL_HINT`` makes it). This module
imports quixstreams only inside the job, so ``bench.run`` can import it without quixstreams.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cs_pulse.kafka_client import KafkaTarget

QUIXSTREAMS = "quixstreams==3.28.1"
ROOT = Path(__file__).resolve().parent.parent
QUIX_VENV = ROOT / ".cache" / "quix-venv"
INSTALL_HINT = (f"python3.11 -m venv .cache/quix-venv && "
                f".cache/quix-venv/bin/pip install '{QUIXSTREAMS}'")
WINDOW = timedelta(seconds=10)
# Records are late as in cs-pulse's windows: cs-pulse keeps its 10 s slots for its longest
# rolling window (60 min) plus a slot past the 5 s grace period (domain/aggregate.py,
# ``Aggregator._horizon``). After the repartition the 8 input partitions' event times
# interleave up to the topic's whole span, so a run that reads hours of events from the
# earliest offset still skips many records in the window step: ``quix_rate`` prints how many.
GRACE = timedelta(seconds=5 + 3600 + 10)


def quix_python() -> str | None:
    """An interpreter that imports quixstreams: this one, else ``.cache/quix-venv``'s."""
    for python in (sys.executable, str(QUIX_VENV / "bin" / "python")):
        if Path(python).exists() and subprocess.run(
                [python, "-c", "import quixstreams"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=120, check=False).returncode == 0:
            return python
    return None


def quix_rate(kafka: KafkaTarget, topic: str, n: int, tmp: Path, timeout: float = 600
              ) -> float | None:
    """Events/s of the quix-streams job through both stages over the first ``n`` records of
    ``topic`` (own consumer group, state in ``tmp``); None if quixstreams is not installed.
    The job is killed after ``timeout`` seconds. ``kafka``'s connection (security included)
    reaches the job as librdkafka options (``QUIX_CONNECTION``)."""
    from cs_pulse.kafka_client import librdkafka_config

    python = quix_python()
    if python is None:
        return None
    out = tmp / "quix.txt"
    log_path = tmp / "quix.log"
    env = dict(os.environ, QUIX_CONNECTION=json.dumps(librdkafka_config(kafka)),
               QUIX_TOPIC=topic, QUIX_EVENTS=str(n),
               QUIX_OUT=str(out), QUIX_GROUP=f"quix-{uuid.uuid4().hex[:6]}",
               QUIX_STATE_DIR=str(tmp / "quix-state"))
    # Imported here: the job's own interpreter has no cs-pulse.
    from cs_pulse.devtools.children import spawn

    with open(log_path, "wb") as log:
        proc = spawn([python, str(Path(__file__).resolve())], env=env,
                     stdout=log, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    if not out.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"quix-streams job (exit {proc.returncode}) wrote no rate:\n{tail}")
    rate, diagnostics = out.read_text().split("\n", 1)
    print(f"quix-streams job: {diagnostics.strip()}", file=sys.stderr)
    return float(rate)


def main() -> None:
    """The job itself (run under an interpreter with quixstreams)."""
    from quixstreams import Application, message_context
    from quixstreams.dataframe.windows import Count, Sum
    from quixstreams.kafka.configuration import ConnectionConfig

    target = int(os.environ["QUIX_EVENTS"])
    out = Path(os.environ["QUIX_OUT"])
    group = os.environ["QUIX_GROUP"]
    connection = ConnectionConfig.from_librdkafka_dict(json.loads(os.environ["QUIX_CONNECTION"]))
    app = Application(broker_address=connection, consumer_group=group,
                      auto_offset_reset="earliest", state_dir=os.environ["QUIX_STATE_DIR"],
                      loglevel="WARNING")
    events = app.topic(os.environ["QUIX_TOPIC"], value_deserializer="json",
                       key_deserializer="bytes",
                       timestamp_extractor=lambda value, headers, ts, ts_type: int(value["ts"]))
    windows = app.topic(f"{group}.windows", value_serializer="json", key_serializer="json")
    seen: dict[str, Any] = {"start": None, "stage2": 0, "late": 0, "responses": 0}
    done: set[tuple[int, int]] = set()     # input (partition, offset) through stage 2

    def first_response(event: dict[str, Any], state: Any) -> dict[str, Any]:
        """Stage 1, keyed by conversation."""
        if seen["start"] is None:
            seen["start"] = time.perf_counter()
        frt = None
        if event.get("type") == "message.sent" and not state.get("answered", False):
            if event.get("sender") == "customer":
                if state.get("first_customer") is None:
                    state.set("first_customer", event["ts"])
            elif event.get("sender") == "agent":
                first = state.get("first_customer")
                if first is not None:
                    frt = event["ts"] - first
                    state.set("answered", True)
                    seen["responses"] += 1
        ctx = message_context()
        return {"queue": event.get("queue") or "", "frt": frt, "p": ctx.partition,
                "o": ctx.offset}

    def counted(record: dict[str, Any]) -> None:
        """Stage 2, keyed by queue: every input record counts once (at-least-once processing
        may repeat some after a rebalance); once all ``target`` are through, stop."""
        seen["stage2"] += 1
        done.add((record["p"], record["o"]))
        if len(done) == target and seen["start"] is not None:
            rate = target / (time.perf_counter() - seen["start"])
            seen["start"] = None
            out.write_text(f"{rate}\nlate records (outside the grace period) {seen['late']}, "
                           f"records repeated in stage 2 {seen['stage2'] - target}, "
                           f"first responses {seen['responses']}\n")
            app.stop()

    def late(*_: Any) -> bool:
        seen["late"] += 1
        return False                # no log line per late record

    sdf = app.dataframe(events)
    sdf = sdf.apply(first_response, stateful=True)
    sdf = sdf.group_by(lambda value: value["queue"], name="queue")
    sdf = sdf.update(counted)
    sdf = (sdf.tumbling_window(WINDOW, grace_ms=GRACE, on_late=late)
           .agg(events=Count(), responses=Count("frt"), frt_sum=Sum("frt"))
           .final())
    sdf.to_topic(windows)
    app.run()


if __name__ == "__main__":
    main()
