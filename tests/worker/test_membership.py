"""A worker's data directory (worker/membership.py): one process holds it at a time, the lock
goes with the process (kill -9 included), and only the holder reads or records the member id
its predecessor had (the LeaveGroup itself, against a real broker: test_faults_kafka.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cs_pulse.worker.membership import MEMBER_FILE, DataDir

HOLD = ("import sys, time; from cs_pulse.worker.membership import DataDir; "
        "d = DataDir(sys.argv[1]); assert d.lock(); print('held', flush=True); time.sleep(60)")


def test_a_directory_held_by_a_live_process_is_not_taken_and_freed_when_it_is_killed(
        tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        other = DataDir(tmp_path)
        assert not other.lock()
        other.record("g", "member-2")                 # not the holder: writes nothing
        assert not (tmp_path / MEMBER_FILE).exists()
        assert other.predecessor("g") is None
        holder.kill()
        holder.wait(10)
        assert other.lock()                            # the kernel dropped the dead one's lock
    finally:
        holder.kill()
        holder.wait(10)


def test_the_holder_reads_back_what_its_predecessor_recorded_for_the_same_group(
        tmp_path: Path) -> None:
    first = DataDir(tmp_path)
    first.record("group-a", "member-1")
    assert first.predecessor("group-a") == "member-1"
    assert first.predecessor("group-b") is None        # another group's member: not ours
    first.forget()
    assert first.predecessor("group-a") is None
    (tmp_path / MEMBER_FILE).write_text("{not json")
    assert first.predecessor("group-a") is None        # a damaged record is no record


def test_a_directory_it_cannot_write_is_no_shortcut_and_no_failure(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    data_dir = DataDir(blocked / "data")        # under a file: cannot be created
    assert not data_dir.lock()
    assert data_dir.predecessor("g") is None
    data_dir.record("g", "member-1")
