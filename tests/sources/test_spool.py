"""The webhook spool: order, durability across a killed process, torn tails, bounds, group
commit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cs_pulse.sources.webhooks import spool as spool_module
from cs_pulse.sources.webhooks.spool import HEADER, Spool, SpoolFull


def payloads(spool: Spool) -> list[bytes]:
    return [r.payload for r in spool.read(10 ** 6)]


async def test_records_come_back_in_order_and_the_cursor_survives_a_restart(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, segment_bytes=200, fsync=False)
    for i in range(30):
        await spool.append(f"record {i}".encode(), 1000 + i)
    assert spool.depth == 30 and len(list(tmp_path.glob("*.seg"))) > 3   # rolled segments
    first = spool.read(10)
    assert [r.payload for r in first] == [f"record {i}".encode() for i in range(10)]
    assert spool.oldest_age(2000) == 1.0
    spool.commit(first)
    assert spool.depth == 20 and spool.oldest_age(2000) == pytest.approx(0.99)
    spool.close()
    again = Spool(tmp_path, 1 << 20, segment_bytes=200, fsync=False)
    assert payloads(again) == [f"record {i}".encode() for i in range(10, 30)]
    again.commit(again.read(10 ** 6))
    assert again.depth == 0 and again.size == 0 and again.oldest_age(5000) == 0.0
    assert len(list(tmp_path.glob("*.seg"))) == 1   # what was forwarded is deleted
    await again.append(b"next", 5000)
    again.close()
    assert payloads(Spool(tmp_path, 1 << 20, fsync=False)) == [b"next"]


async def test_a_torn_or_corrupt_tail_is_cut_at_opening(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, fsync=False)
    await spool.append(b"whole", 1)
    await spool.append(b"also whole", 2)
    spool.close()
    [segment] = tmp_path.glob("*.seg")
    with open(segment, "ab") as f:   # a header promising more than was written
        f.write(HEADER.pack(100, 0, 3) + b"only some")
    reopened = Spool(tmp_path, 1 << 20, fsync=False)
    assert payloads(reopened) == [b"whole", b"also whole"]
    assert reopened.truncated == HEADER.size + len(b"only some")
    await reopened.append(b"after", 4)
    reopened.close()
    data = bytearray(segment.read_bytes())
    data[HEADER.size + 2] ^= 0xFF    # the first record's payload flipped: its CRC fails
    segment.write_bytes(bytes(data))
    damaged = Spool(tmp_path, 1 << 20, fsync=False)
    assert payloads(damaged) == []    # nothing after a damaged record is trusted


async def test_the_spool_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 100, fsync=False)
    await spool.append(b"x" * 50, 1)
    with pytest.raises(SpoolFull):
        await spool.append(b"y" * 50, 2)
    assert spool.depth == 1
    spool.commit(spool.read())
    await spool.append(b"y" * 50, 2)    # room again once forwarded


async def test_appends_wait_for_one_shared_fsync(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(spool_module.os, "fsync", counting)
    spool = Spool(tmp_path, 1 << 20, fsync=True)
    await asyncio.gather(*(spool.append(f"{i}".encode(), i) for i in range(200)))
    assert spool.depth == 200
    assert 1 <= len(calls) < 20   # group commit: not one flush per record


async def test_a_reader_waiting_wakes_on_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, fsync=False)
    waiter = asyncio.create_task(spool.wait())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await spool.append(b"hello", 1)
    await asyncio.wait_for(waiter, 1)


CHILD = textwrap.dedent("""
    import asyncio, sys
    from cs_pulse.sources.webhooks.spool import Spool

    async def main():
        spool = Spool(sys.argv[1], 1 << 30, segment_bytes=4096, fsync=sys.argv[2] == "1")
        i = 0
        while True:
            await spool.append(b"delivery %d " % i + b"." * (i % 300), i)
            print(i, flush=True)   # acknowledged
            i += 1

    asyncio.run(main())
""")


@pytest.mark.parametrize("fsync", [True, False])
def test_every_acknowledged_record_survives_kill_9(tmp_path: Path, fsync: bool) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(int(fsync))],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acknowledged = -1
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 1500:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    records = payloads(Spool(tmp_path, 1 << 30, segment_bytes=4096, fsync=False))
    kept = [int(p.split()[1]) for p in records]
    assert kept[:acknowledged + 1] == list(range(acknowledged + 1))   # all, in order
    assert kept == list(range(len(kept)))                             # nothing else
