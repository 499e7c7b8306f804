"""What an operator's verdict on an alert does, as one table: the transitions an alert may make
and what each does to its fault. The API, the pages and Label Studio's review project all go
through `apply` (cloud/alerts.py:change_status), so no path can leave a fault out of step.

Alert statuses: `new` (as the drone sent it), `confirmed`, `reclassified` (a real fault of
another class: its class and severity follow), `false_alarm`, `repaired` (the crew fixed it: its
fault waits for a clean pass to become `repair_confirmed`, cloud/faults.py). `new`, `confirmed`
and `reclassified` are open: the crew still has work there.

Fault statuses: `open`, `repaired`, `repair_confirmed`, `false_alarm` (every sighting of it was
judged a false alarm: later sightings do not join it; confirming one of them reopens it).
"""

from __future__ import annotations

from dataclasses import dataclass

from comms.classes import ClassList, known_class_lists, load_class_list

OPEN = ("new", "confirmed", "reclassified")  # an alert still asking for work
OPEN_FAULTS = ("open",)  # repaired faults wait for a clean pass, not for the crew

# status -> the statuses an operator may set from it. Setting the status it has is no change
# (a double click), except `reclassified` with another class.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("confirmed", "reclassified", "false_alarm"),
    "confirmed": ("reclassified", "false_alarm", "repaired"),
    "reclassified": ("confirmed", "reclassified", "false_alarm", "repaired"),
    "false_alarm": ("confirmed", "reclassified"),
    "repaired": ("confirmed",),  # the repair did not hold: open again
}

WHY_NOT = {
    ("new", "repaired"): "only a confirmed fault can be marked repaired: confirm it first",
    ("false_alarm", "repaired"): "a false alarm cannot be repaired: confirm it first if it is a fault",
}


class TransitionRefused(ValueError):
    """A status change the rules do not allow (one line, said to the operator)."""


@dataclass(frozen=True)
class Effect:
    """What one verdict changes: the alert's status, class and severity, and its fault's."""

    status: str
    fault_class: str
    severity: str
    fault_status: str | None  # None: the fault keeps its status


def classes() -> ClassList:
    """The newest class list this cloud knows (the configured one when it is newer)."""
    known = known_class_lists()
    newest = known[max(known)] if known else load_class_list()
    configured = load_class_list()
    return configured if (configured.version or 0) > (newest.version or 0) else newest


def decide(status: str, new: str, fault_class: str, severity: str, new_class: str | None = None,
           fault_status: str | None = None, others_all_false: bool = True,
           class_list: ClassList | None = None) -> Effect:
    """The effect of setting `new` on an alert of `status`, `fault_class` and `severity`, whose
    fault is in `fault_status` (None: no fault); `others_all_false`: every other alert of the
    fault is a false alarm (or there is none). TransitionRefused when the rules say no."""
    if new == status and not (new == "reclassified" and new_class and new_class != fault_class):
        return Effect(status, fault_class, severity, None)
    if new not in TRANSITIONS.get(status, ()):
        why = WHY_NOT.get((status, new)) or ("an alert cannot go back to new" if new == "new" else
                                             f"{status} cannot become {new}")
        raise TransitionRefused(why)
    cls, sev = fault_class, severity
    if new == "reclassified":
        if not new_class:
            raise TransitionRefused("reclassified needs the right fault_class")
        rules = class_list or classes()
        if new_class not in rules.names:
            raise TransitionRefused(f"{new_class!r} is not a class of the class list ({', '.join(rules.fault_names)})")
        found = rules.severity_of(new_class)
        if found is None:
            raise TransitionRefused(f"{new_class!r} raises no alert: mark the alert a false alarm instead")
        cls, sev = new_class, found.name.lower()
    if fault_status is None:
        return Effect(new, cls, sev, None)
    if new == "false_alarm":
        after = "false_alarm" if others_all_false else None
    elif new == "repaired":
        after = "repaired"
    elif fault_status == "false_alarm" or status == "repaired":
        after = "open"  # judged real again, or the repair did not hold
    else:
        after = None
    return Effect(new, cls, sev, after)
