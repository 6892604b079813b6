"""Conversation changelog rows: a row written before the compact state (the customer key kept
whole, lists for the agents and the waiting series, event ids) loads to the same conversation,
and a recovery from it gives the same customer records."""

from __future__ import annotations

from typing import Any

from cs_pulse.domain.conversation import Conversation
from cs_pulse.domain.stage import ConversationStage
from factory import agent_msg, applied, cust, ev


def old_row(row: dict[str, Any], customer_key: str, ids: list[str]) -> dict[str, Any]:
    """``row`` as written before the compact state."""
    old = {k: v for k, v in row.items() if k != "customer"}
    return {**old, "customer_key": customer_key, "seen": ids,
            "handled_by": list(row["handled_by"]), "waiting_series": list(row["waiting_series"])}


def test_old_rows_load_to_the_same_conversation_and_customer_records() -> None:
    events = {"c1": [ev("conversation.started", 0, "c1", customer_id="u|1", event_id="c1-s"),
                     cust(1, "c1", event_id="c1-m"), agent_msg(2, "c1", event_id="c1-a")],
              "c2": [ev("conversation.started", 0, "c2", event_id="c2-s"),
                     cust(1, "c2", event_id="c2-m")]}
    stage = ConversationStage()
    applied(stage, [e for conv in events.values() for e in conv])
    rows = dict(stage.take_changes())
    keys = {"c1": "s1|c:u|1", "c2": f"s1|v:c2@{stage.conversations['c2'].created}"}
    assert stage.conversations["c1"].handled_by == ("a1",)
    for cid, key in keys.items():
        conv = stage.conversations[cid]
        assert conv.customer_key == key
        ids = [e.event_id for e in events[cid]]
        loaded = Conversation.from_dict(old_row(rows[f"c|{cid}"], key, ids))
        assert loaded == conv == Conversation.from_dict(rows[f"c|{cid}"])

    recovered = ConversationStage()
    for cid, key in keys.items():
        ids = [e.event_id for e in events[cid]]
        recovered.load(f"c|{cid}", old_row(rows[f"c|{cid}"], key, ids))
    closing = [ev("conversation.closed", 3, cid, closed_by="agent", resolved=True)
               for cid in keys]
    expected = applied(stage, closing)
    again = applied(recovered, closing)
    assert again.customers == expected.customers
    assert again.facts == expected.facts
    assert {r.key for r in again.customers} == set(keys.values())
