"""The compiled core (mypyc, setup.py) and the same modules as plain Python give identical facts
and identical /metrics pages on the same input: simulated days with disorder, duplicates and
invalid records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cs_pulse.worker.engine

SERVICE = Path(__file__).resolve().parents[2] / "service"
SCRIPT = r'''
import json, random, sys, zlib
import orjson
from cs_pulse.settings import Settings
from cs_pulse.sources.produce import event_key
from cs_pulse.sources.simulate import SimConfig, generate
from cs_pulse.worker.engine import Engine, as_records
from cs_pulse.worker.inprocess import InProcess
import cs_pulse.worker.engine as engine_module

out = {"compiled": engine_module.__file__.endswith(".so"), "runs": []}
for seed in (1, 2, 3):
    rng = random.Random(seed)
    events = list(generate(SimConfig(seed=seed, start=1_700_000_000.0 + seed * 7919,
                                     duration=5 * 3600, shops=2, agents_per_shop=6)))
    values = [orjson.dumps(e) for e in events]
    for i in rng.sample(range(len(values)), 40):          # duplicates, later
        values.append(values[i])
    values += [b"{", b"[]", b'{"type": "message.sent"}']  # invalid
    for i in range(0, len(values) - 8, 97):                # disorder within a few events
        j = i + rng.randrange(1, 8)
        values[i], values[j] = values[j], values[i]
    offsets, records, facts = {}, [], []
    for v in values:
        try:
            key = event_key(orjson.loads(v)) if v.startswith(b"{") else b"x"
        except Exception:
            key = b"x"
        p = zlib.crc32(key) % 3
        offsets[p] = offsets.get(p, -1) + 1
        records.append((p, offsets[p], key, v))
    ip = InProcess(Settings(partitions=3))
    for i in range(0, len(records), 500):
        out_ = ip.engine.on_events(records[i:i + 500])
        facts += [v.decode() for _, v in out_.facts] + [v.decode() for _, v in out_.customers]
        ip._route(out_)
    ip.release_all()
    samples = ip.samples(now=events[-1]["ts"] / 1000 + 60)
    wall = ("cs_last_event_age", "cs_last_fold_age", "cs_event_lag")   # the wall clock's
    out["runs"].append({"facts": facts, "samples": sorted(
        [n, sorted(l.items()), repr(v)] for n, l, v in samples if not n.startswith(wall))})
json.dump(out, sys.stdout)
'''


def run(pythonpath: str | None) -> dict[str, object]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          timeout=600, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(not cs_pulse.worker.engine.__file__.endswith(".so"),
                    reason="installed without the compiled core (CS_PULSE_PURE_PYTHON=1)")
def test_compiled_and_pure_python_give_identical_facts_and_pages(tmp_path: Path) -> None:
    pure = tmp_path / "pure"
    shutil.copytree(SERVICE / "cs_pulse", pure / "cs_pulse", symlinks=False,
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    compiled, plain = run(None), run(str(pure))
    assert compiled["compiled"] is True and plain["compiled"] is False
    assert len(compiled["runs"]) == len(plain["runs"]) == 3   # type: ignore[arg-type]
    for a, b in zip(compiled["runs"], plain["runs"], strict=True):   # type: ignore[call-overload]
        assert a["facts"] and a["samples"]
        assert a["facts"] == b["facts"]
        assert a["samples"] == b["samples"]
