"""The status rules as a table (cloud/status_rules.py), then the same rules through the store on
SQLite and PostgreSQL: a fault's class and severity follow a reclassification, a false alarm
confirmed reopens its fault and later sightings join it, "repaired" only from a confirmed alert,
and a flight never passes clean over a fault its own BeiDou alerts (no flight id) reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cloud.alerts import change_status, record
from cloud.db import session_scope
from cloud.faults import record_passes
from cloud.flights import record_track
from cloud.models import Alert, AlertEvent, Fault
from cloud.status_rules import OPEN, TRANSITIONS, TransitionRefused, decide
from comms import alert_json
from comms.alert import Alert as Record
from comms.alert_pack import pack, unpack
from comms.classes import Severity, parse_class_list

CLASSES = parse_class_list("""version = 2
[[class]]
name = "insulator"
fault = false
[[class]]
name = "defect"
fault = true
severity = "high"
[[class]]
name = "bird_nest"
fault = true
severity = "medium"
[[class]]
name = "flashover"
fault = true
severity = "medium"
""")

# (alert status, fault status, others all false, verdict, new class) ->
#     (alert status, class, severity, fault status afterwards) or the refusal's words
TABLE = [
    ("new", "open", True, "confirmed", None, ("confirmed", "defect", "high", "open")),
    ("new", "open", True, "false_alarm", None, ("false_alarm", "defect", "high", "false_alarm")),
    ("new", "open", False, "false_alarm", None, ("false_alarm", "defect", "high", "open")),  # others stand
    ("new", "open", True, "reclassified", "bird_nest", ("reclassified", "bird_nest", "medium", "open")),
    ("new", "open", True, "reclassified", "insulator", "raises no alert"),
    ("new", "open", True, "reclassified", "kite", "not a class"),
    ("new", "open", True, "reclassified", None, "needs the right fault_class"),
    ("new", "open", True, "repaired", None, "confirm it first"),
    ("new", "open", True, "new", None, ("new", "defect", "high", "open")),  # no change
    ("confirmed", "open", True, "repaired", None, ("repaired", "defect", "high", "repaired")),
    ("confirmed", "open", True, "confirmed", None, ("confirmed", "defect", "high", "open")),  # a double click
    ("confirmed", "open", True, "false_alarm", None, ("false_alarm", "defect", "high", "false_alarm")),
    ("confirmed", "open", True, "new", None, "cannot go back to new"),
    ("false_alarm", "false_alarm", True, "confirmed", None, ("confirmed", "defect", "high", "open")),  # reopens
    ("false_alarm", "false_alarm", True, "reclassified", "flashover",
     ("reclassified", "flashover", "medium", "open")),
    ("false_alarm", "false_alarm", True, "repaired", None, "cannot be repaired"),
    ("reclassified", "open", True, "repaired", None, ("repaired", "defect", "high", "repaired")),
    ("reclassified", "open", True, "reclassified", "bird_nest", ("reclassified", "bird_nest", "medium", "open")),
    ("repaired", "repaired", True, "confirmed", None, ("confirmed", "defect", "high", "open")),  # did not hold
    ("repaired", "repair_confirmed", True, "confirmed", None, ("confirmed", "defect", "high", "open")),
    ("repaired", "repaired", True, "false_alarm", None, "repaired cannot become false_alarm"),
]


@pytest.mark.parametrize(("status", "fault", "others_false", "verdict", "new_class", "expected"), TABLE)
def test_the_status_rules_table(status, fault, others_false, verdict, new_class, expected):
    if isinstance(expected, str):
        with pytest.raises(TransitionRefused, match=expected):
            decide(status, verdict, "defect", "high", new_class, fault, others_false, CLASSES)
        return
    e = decide(status, verdict, "defect", "high", new_class, fault, others_false, CLASSES)
    assert (e.status, e.fault_class, e.severity, e.fault_status or fault) == expected


def test_every_status_is_in_the_table_and_open_counts_reclassified_faults():
    assert set(TRANSITIONS) == {"new", "confirmed", "reclassified", "false_alarm", "repaired"}
    assert {row[0] for row in TABLE} == set(TRANSITIONS)
    assert set(OPEN) == {"new", "confirmed", "reclassified"}


KEY = b"k" * 32
T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)
TOPIC = "pli/fleet1/UAV-07/alerts"


def _alert(seq: int, lat: float = 25.3, lon: float = 103.1, cls: str = "defect", flight: str | None = "F1",
           at: datetime | None = None) -> Record:
    return Record("UAV-07", seq, flight, at or T0 + timedelta(seconds=seq), lat, lon, 1650.0, cls, 0.9,
                  Severity.HIGH if cls == "defect" else Severity.MEDIUM, position_source="laser", epoch=1,
                  class_list_version=1, box=(100.0, 120.0, 180.0, 200.0))


def _store(url: str, a: Record, beidou: bool = False) -> str:
    if beidou:  # through the real codec: quantized, no flight id
        batch = unpack(pack([a], 7, KEY, 77).payload, lambda k: (a.drone_id, KEY))
        payload = json.dumps(alert_json.to_json(batch.alerts[0]) | {"via": "beidou"}).encode()
    else:
        payload = alert_json.dumps(a, b"\xff\xd8thumb")
    with session_scope(url) as s:
        record(s, TOPIC, payload)
        return s.scalars(select(Alert.id).where(Alert.seq == a.seq)).one()


def _verdict(url: str, alert_id: str, status: str, fault_class: str | None = None) -> None:
    with session_scope(url) as s:
        change_status(s, s.get(Alert, alert_id), status, "alice (operator)", "test", "", fault_class)


def test_a_reclassified_alert_takes_its_fault_and_the_class_list_s_severity(db_url):
    aid = _store(db_url, _alert(1))
    _verdict(db_url, aid, "reclassified", "bird_nest")
    with session_scope(db_url) as s:
        alert = s.get(Alert, aid)
        fault = s.get(Fault, alert.fault_id)
        assert (alert.status, alert.fault_class, alert.severity) == ("reclassified", "bird_nest", "medium")
        assert (fault.fault_class, fault.severity, fault.status) == ("bird_nest", "medium", "open")
        trail = {(e.field, e.old, e.new) for e in s.scalars(select(AlertEvent).where(AlertEvent.alert_id == aid))}
        assert trail == {("status", "new", "reclassified"), ("fault_class", "defect", "bird_nest"),
                         ("severity", "high", "medium")}
    with pytest.raises(ValueError, match="confirm it first"):
        _verdict(db_url, _store(db_url, _alert(2, lat=25.4)), "repaired")


def test_a_false_alarm_confirmed_reopens_its_fault_and_later_sightings_join_it(db_url):
    first = _store(db_url, _alert(1))
    _verdict(db_url, first, "false_alarm")
    later = _store(db_url, _alert(2, lat=25.30003, flight="F2"))  # ~3 m away, the next flight
    with session_scope(db_url) as s:
        a, b = s.get(Alert, first), s.get(Alert, later)
        assert a.fault_id == b.fault_id and b.status == "new"
        fault = s.get(Fault, a.fault_id)
        assert (fault.status, fault.sightings) == ("false_alarm", 2)  # a sighting alone does not overrule
    _verdict(db_url, first, "confirmed")
    with session_scope(db_url) as s:
        assert s.get(Fault, s.get(Alert, first).fault_id).status == "open"
    # one of two sightings judged false: the fault stands on the other
    _verdict(db_url, later, "false_alarm")
    with session_scope(db_url) as s:
        assert s.get(Fault, s.get(Alert, first).fault_id).status == "open"


def test_a_flight_does_not_pass_clean_over_a_fault_its_own_beidou_alerts_reported(db_url):
    """The regression: two faults reported by BeiDou first (no flight id), then the flight's own
    4G alert elsewhere and its track over all three. The BeiDou faults are this flight's sightings."""
    beidou = [_store(db_url, _alert(1, lat=25.30000, flight=None), beidou=True),
              _store(db_url, _alert(2, lat=25.30100, cls="bird_nest", flight=None), beidou=True)]
    _store(db_url, _alert(3, lat=25.30200, flight="F9"))
    older = _store(db_url, _alert(4, lat=25.30150, lon=103.1001, flight=None, at=T0 - timedelta(days=3)),
                   beidou=True)  # three days before: another flight's
    for aid in beidou:
        _verdict(db_url, aid, "confirmed")
        _verdict(db_url, aid, "repaired")
    _verdict(db_url, older, "confirmed")
    track = [[25.29990 + k * 0.0001, 103.1] for k in range(30)]
    with session_scope(db_url) as s:
        passed = {f.id for f in record_track(s, "F9", "UAV-07", track)}
        faults = {aid: s.get(Alert, aid).fault_id for aid in [*beidou, older]}
    with session_scope(db_url) as s:
        for aid in beidou:
            assert faults[aid] not in passed
            assert s.get(Fault, faults[aid]).status == "repaired"  # not turned into repair_confirmed
        assert faults[older] in passed and s.get(Fault, faults[older]).clean_passes == 1


def test_without_a_time_span_every_flightless_alert_of_the_drone_counts_as_its_own(db_url):
    aid = _store(db_url, _alert(1, flight=None), beidou=True)
    with session_scope(db_url) as s:
        from cloud.models import Flight

        s.add(Flight(id="F10", drone_id="UAV-07"))  # no alert, no span: nothing tells the flights apart
        s.flush()
        assert record_passes(s, "F10", [[25.3, 103.1]]) == []
    with session_scope(db_url) as s:
        assert s.get(Fault, s.get(Alert, aid).fault_id).clean_passes == 0
