"""The idempotence memory: event ids kept as 8-byte digests, and changelog rows of either
format (hex digests, or the ids themselves as written before digests) load to the same
memory."""

from __future__ import annotations

from cs_pulse.domain.seen import from_row, holds, id_digest, to_row
from cs_pulse.domain.stage import ConversationStage
from factory import agent_msg, applied, cust, ev


def test_digests_are_stable_across_processes() -> None:
    # A fixed value: the changelog of one process is read by another (never ``hash()``).
    assert id_digest("conv-1-s").hex() == "27c3bd5e611c94c4"


def test_only_whole_digests_are_held() -> None:
    a, b = id_digest("a"), id_digest("b")
    assert holds(a + b, a) and holds(a + b, b) and not holds(a + b, id_digest("c"))
    assert not holds(a + b, a[4:] + b[:4])   # straddles two digests
    assert not holds(b"", a)


def test_rows_round_trip_and_old_rows_of_ids_are_digested() -> None:
    digests = id_digest("e1") + id_digest("e2")
    assert from_row(to_row(digests)) == digests
    assert from_row(["e1", "e2"]) == digests
    assert from_row([]) == b"" == from_row("")


def test_a_recovery_from_rows_of_event_ids_still_drops_duplicates() -> None:
    start = ev("conversation.started", 0, "c1", event_id="c1-s")
    status = ev("agent.status", 1, "", agent_id="a1", status="online", event_id="st-1")
    stage = ConversationStage()
    assert applied(stage, [start, status]).duplicates == 0
    rows = dict(stage.take_changes())
    conv_row, entity_row = rows["c|c1"], rows["e|a|s1|a1"]
    assert conv_row["seen"] == to_row(id_digest("c1-s"))
    assert entity_row["seen"] == to_row(id_digest("st-1"))

    # The same state, as a changelog written before digests holds it.
    recovered = ConversationStage()
    recovered.load("c|c1", {**conv_row, "seen": ["c1-s"]})
    recovered.load("e|a|s1|a1", {**entity_row, "seen": ["st-1"]})
    assert recovered.conversations["c1"].seen == stage.conversations["c1"].seen
    assert recovered.entities["a|s1|a1"].seen == stage.entities["a|s1|a1"].seen
    again = applied(recovered, [start, status, cust(2, "c1", event_id="c1-m"),
                                agent_msg(3, "c1", event_id="c1-a")])
    assert again.duplicates == 2
    assert any(f.kind == "first_response" for f in again.facts)
