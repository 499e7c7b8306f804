"""Alerts for the tests, numbered by the outbox they are meant for (its epoch and sequence)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from comms.alert import Alert
from comms.classes import Severity, known_class_lists
from comms.outbox import Outbox

WHEN = datetime(2026, 11, 22, 9, tzinfo=UTC)
_PLACES = itertools.count()  # every alert a test makes is another fault, as in flight


def new_alert(box: Outbox, /, severity: Severity | None = None, cls: str = "defect", **kw) -> Alert:
    """The next alert of `box`'s drone, at a place of its own, on class-list version 1 (so it can
    travel by BeiDou); its severity the class list's for its class unless given."""
    if severity is None:
        rule = known_class_lists()[max(known_class_lists())]
        severity = (rule.severity_of(cls) if cls in rule.names else None) or Severity.HIGH
    epoch, seq = box.next_id()
    fields = dict(flight_id="F1", time=WHEN, lat=25.0 + next(_PLACES) / 1e5, lon=102.0, alt=1600.0, fault_class=cls,
                  confidence=0.9, severity=severity, epoch=epoch, class_list_version=1) | kw
    return Alert(box.drone_id, seq, **fields)


def fill(box: Outbox, n: int) -> list[str]:
    """Put `n` alerts, two high (defect) in three, the rest medium (bird nest); their ids."""
    ids = []
    for i in range(n):
        a = new_alert(box, Severity.HIGH if i % 3 else Severity.MEDIUM, "defect" if i % 3 else "bird_nest")
        box.put(a)
        ids.append(a.id)
    return ids
