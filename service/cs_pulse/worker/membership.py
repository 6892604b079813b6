"""A worker restarted on its data directory takes its predecessor's place in the group at once.

A worker killed without leaving the group (kill -9, the OOM killer, a crash) stays a member
until its session times out (``CS_PULSE_SESSION_TIMEOUT``, 30 s): the group cannot complete a
rebalance before, so a restarted worker gets no partition for that long. So a worker records
its member id in its data directory each time it joins, and one that starts on that directory
and can lock it knows the member recorded there is dead (the kernel releases a dead process's
lock, kill -9 included) and sends the group coordinator the LeaveGroup that member never sent.

A second worker started on a directory already locked is left alone (it neither records nor
leaves for anyone). Static membership (KIP-345) would skip the rebalance altogether, but a
static member keeps its generation across restarts, and the changelog fences are epochs of
the generation (README, *Zombie fencing*).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("cs_pulse")
LOCK_FILE = "worker.lock"
MEMBER_FILE = "group-member.json"


class DataDir:
    """The worker's data directory, locked for the life of the process if no other holds it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: IO[bytes] | None = None

    def lock(self) -> bool:
        """True if this process holds the directory now (for as long as it lives)."""
        if self._lock is None:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                handle = open(self.path / LOCK_FILE, "ab")  # noqa: SIM115 - held until exit
            except OSError:   # a directory it cannot write: no restart shortcut, no failure
                return False
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._lock = handle
        return True

    def predecessor(self, group: str) -> str | None:
        """The member id the last holder of this directory had in ``group``, if it recorded
        one and this process holds the directory (so that holder is gone)."""
        if not self.lock():
            return None
        try:
            recorded = json.loads((self.path / MEMBER_FILE).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict) or recorded.get("group") != group:
            return None
        member = recorded.get("member_id")
        return member if isinstance(member, str) and member else None

    def record(self, group: str, member_id: str) -> None:
        """This process's member id, written whole (a crash mid-write leaves the old one)."""
        if not self.lock():
            return
        tmp = self.path / f"{MEMBER_FILE}.tmp"
        tmp.write_text(json.dumps({"group": group, "member_id": member_id}))
        os.replace(tmp, self.path / MEMBER_FILE)

    def forget(self) -> None:
        if self.lock():
            (self.path / MEMBER_FILE).unlink(missing_ok=True)


async def leave_for(kafka: dict[str, Any], group: str, member_id: str) -> bool:
    """Send the group coordinator a LeaveGroup for ``member_id``; True if it took it, False if
    the member had already gone (its session expired)."""
    from aiokafka import errors
    from aiokafka.client import AIOKafkaClient, CoordinationType
    from aiokafka.protocol.group import LeaveGroupRequest

    client = AIOKafkaClient(**kafka)
    await client.bootstrap()
    try:
        coordinator = await client.coordinator_lookup(CoordinationType.GROUP, group)
        response = await client.send(coordinator, LeaveGroupRequest(group, member_id))
    finally:
        await client.close()
    error = errors.for_code(response.error_code)
    if error is errors.NoError:
        return True
    if error is errors.UnknownMemberIdError:
        return False
    raise error()


async def replace_predecessor(data_dir: DataDir, kafka: dict[str, Any], group: str) -> None:
    """Make the group drop the dead worker this process restarts for, if there is one."""
    member = data_dir.predecessor(group)
    if member is None:
        return
    try:
        left = await leave_for(kafka, group, member)
    except Exception as exc:   # best effort: the session timeout still removes it
        log.warning("could not remove the previous worker on %s (member %s) from group %s: "
                    "%r; waiting for its session to time out", data_dir.path, member, group,
                    exc)
        return
    data_dir.forget()
    if left:
        log.warning("the previous worker on %s (member %s) had not left group %s: removed it, "
                    "so the group rebalances now instead of after its session timeout",
                    data_dir.path, member, group)
