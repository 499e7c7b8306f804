"""The cloud's store on SQLite and on a real PostgreSQL: migrations, alert copies merged or kept
apart, epochs, the asset register, and the fault history across flights."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from cloud.alert_doc import alert_json_of
from cloud.alerts import IngestError, record
from cloud.db import session_scope
from cloud.faults import record_passes
from cloud.models import Alert, AlertCopy, Fault, FaultObservation
from cloud.towers import import_towers, nearest, read_csv, read_kml
from comms import alert_json
from comms.alert import Alert as Record
from comms.alert_pack import pack, unpack
from comms.classes import Severity

KEY = b"k" * 32
T0 = datetime(2026, 11, 22, 9, tzinfo=UTC)
TOPIC = "pli/fleet1/UAV-07/alerts"


def _alert(seq: int, lat: float = 25.3, lon: float = 103.1, cls: str = "defect", epoch: int = 1, **kw) -> Record:
    fields = dict(tower_id=None, position_source="laser", epoch=epoch, class_list_version=1,
                  model_version="pli-default/2026.11.22", source_frame=f"DJI_{seq:04d}.JPG",
                  box=(100.0, 120.0, 180.0, 200.0)) | kw
    return Record("UAV-07", seq, "F1", T0 + timedelta(seconds=seq), lat, lon, 1650.4, cls, 0.87654,
                  Severity.HIGH if cls == "defect" else Severity.MEDIUM, **fields)


def _mqtt(a: Record, thumb: bytes = b"\xff\xd8thumb") -> bytes:
    return alert_json.dumps(a, thumb)


def _beidou(a: Record) -> bytes:
    """The ground station's republished copy: through the real codec (quantized, no flight, no thumbnail)."""
    batch = unpack(pack([a], 7, KEY, 77).payload, lambda k: (a.drone_id, KEY))
    return json.dumps(alert_json.to_json(batch.alerts[0]) | {"via": "beidou"}).encode()


def _rows(url):
    with session_scope(url) as s:  # thumbnails are deferred: loaded here, while the session is open
        return {r.id: r for r in s.scalars(select(Alert).options(undefer(Alert.thumbnail)))}


@pytest.mark.parametrize("order", ["beidou_first", "mqtt_first"])
def test_a_beidou_copy_and_the_mqtt_copy_end_as_one_row_with_the_richer_fields(db_url, order):
    a = _alert(1)
    copies = [_beidou(a), _mqtt(a)] if order == "beidou_first" else [_mqtt(a), _beidou(a)]
    verdicts = []
    for payload in copies:
        with session_scope(db_url) as s:
            verdicts.append(record(s, TOPIC, payload).verdict)
    assert verdicts == ["new", "duplicate"]
    (row,) = _rows(db_url).values()
    assert row.id == a.id and row.via == "both" and row.precise and row.thumbnail == b"\xff\xd8thumb"
    assert row.flight_id == "F1" and row.source_frame == "DJI_0001.JPG" and row.box == [100.0, 120.0, 180.0, 200.0]
    assert row.lat == a.lat and row.confidence == a.confidence and not row.conflict  # full precision kept


@pytest.mark.parametrize("order", ["beidou_first", "mqtt_first"])
def test_what_only_the_mqtt_copy_carries_is_kept_whatever_came_first(db_url, order):
    """A position from several views: BeiDou's two bits say "other" and carry neither the error
    estimate nor the stale-telemetry flag; the row ends with all three from the MQTT copy."""
    a = _alert(2, position_source="multi_view", position_error_m=1.7, telemetry_stale=True)
    copies = [_beidou(a), _mqtt(a)] if order == "beidou_first" else [_mqtt(a), _beidou(a)]
    for payload in copies:
        with session_scope(db_url) as s:
            record(s, TOPIC, payload)
    (row,) = _rows(db_url).values()
    assert row.position_source == "multi_view" and row.position_error_m == 1.7
    assert row.flags == ["telemetry_stale"] and row.via == "both"
    with session_scope(db_url) as s:
        doc = alert_json_of(s.get(Alert, a.id))
    assert doc["position_error_m"] == 1.7 and doc["flags"] == ["telemetry_stale"]


def test_a_copy_that_disagrees_is_kept_apart_flagged_and_refused(db_url):
    a = _alert(1)
    with session_scope(db_url) as s:
        record(s, TOPIC, _mqtt(a))
    other = replace(a, lat=a.lat + 0.001)  # the same id for another fault: a reused number
    with session_scope(db_url) as s:
        out = record(s, TOPIC, _mqtt(other))
    assert out.verdict == "conflict" and out.refusal == {"id": a.id, "reason": "superseded_epoch", "highest_epoch": 1}
    with session_scope(db_url) as s:
        row = s.get(Alert, a.id)
        copies = s.scalars(select(AlertCopy)).all()
        assert row.conflict and row.lat == a.lat and len(copies) == 1 and copies[0].doc["lat"] == other.lat


def test_epochs_below_the_drones_highest_are_refused_and_ids_are_idempotent(db_url):
    with session_scope(db_url) as s:
        assert record(s, TOPIC, _mqtt(_alert(5, epoch=3))).verdict == "new"
    with session_scope(db_url) as s:
        out = record(s, TOPIC, _mqtt(_alert(6, epoch=2, lat=25.31)))
    assert out.verdict == "superseded_epoch" and out.refusal["highest_epoch"] == 3
    for _ in range(3):
        with session_scope(db_url) as s:
            assert record(s, TOPIC, _mqtt(_alert(5, epoch=3))).ack is not None
    assert len(_rows(db_url)) == 1


@pytest.mark.parametrize("topic, payload, problem", [
    ("pli/fleet1/UAV-08/alerts", None, "is not the topic's"),
    (TOPIC, b"{not json", "malformed"),
    (TOPIC, b'{"schema": "pli.alert/2"}', "lacks field"),
    ("pli/fleet1/UAV-07/acks", None, "is not pli/<fleet>/<drone>/alerts"),
])
def test_what_is_not_an_alert_of_that_drone_is_one_clear_error(db_url, topic, payload, problem):
    with pytest.raises(IngestError, match=problem) as info, session_scope(db_url) as s:
        record(s, topic, payload if payload is not None else _mqtt(_alert(1)))
    assert "\n" not in str(info.value)


TOWERS = "line,tower,lat,lon\nL1,T01,25.3000,103.1000\nL1,T02,25.3003,103.1004\nL1,T03,25.3006,103.1008\n"


def test_towers_from_csv_and_kml_and_alerts_get_the_nearest_tower_and_span(db_url, tmp_path):
    kml_text = ('<?xml version="1.0" encoding="UTF-8"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
                + "".join(f"<Placemark><name>L2/T{i:02d}</name><Point><coordinates>{104.0 + i * 0.0004},"
                          f"{26.0 + i * 0.0003},0</coordinates></Point></Placemark>" for i in (1, 2))
                + "</Document></kml>")
    rows = read_csv(TOWERS) + read_kml(kml_text.encode())
    assert [r.tower for r in rows[-2:]] == ["T01", "T02"] and rows[-1].lat == pytest.approx(26.0006)
    with session_scope(db_url) as s:
        assert import_towers(s, rows) == 5
        assert import_towers(s, rows) == 5  # idempotent
    with session_scope(db_url) as s:
        tower, span = nearest(s, 25.30035, 103.10045)  # just past T02, towards T03
        assert (tower.line_id, tower.tower_id, span) == ("L1", "T02", "T02-T03")
        assert nearest(s, 25.5, 103.5) is None  # kilometres from every tower
        record(s, TOPIC, _mqtt(_alert(1, lat=25.30005, lon=103.10005)))
    row = next(iter(_rows(db_url).values()))
    assert (row.line_id, row.tower_id, row.span) == ("L1", "T01", "T01-T02")
    with pytest.raises(ValueError, match="lacks"):
        read_csv("tower,lat\nT1,2\n")


def test_the_fault_history_links_flights_records_clean_passes_and_opens_new_faults(db_url):
    first = [_alert(1, lat=25.30000, lon=103.10000), _alert(2, lat=25.30100, lon=103.10100, cls="bird_nest")]
    second = [replace(_alert(11, lat=25.30005, lon=103.10003), flight_id="F2"),  # ~6 m away: the same fault
              replace(_alert(12, lat=25.30030, lon=103.10000), flight_id="F2"),  # ~33 m: another fault
              replace(_alert(13, lat=25.30000, lon=103.10001, cls="bird_nest"), flight_id="F2")]  # another class
    for a in first + second:
        with session_scope(db_url) as s:
            record(s, TOPIC, _mqtt(a))
    with session_scope(db_url) as s:
        by_alert = {a.id: a.fault_id for a in s.scalars(select(Alert))}
        assert by_alert[second[0].id] == by_alert[first[0].id]
        assert len({by_alert[a.id] for a in (first[0], second[1], second[2])}) == 3
        fault = s.get(Fault, by_alert[first[0].id])
        assert fault.sightings == 2 and {o.flight_id for o in fault.observations} == {"F1", "F2"}
        nest = s.get(Fault, by_alert[first[1].id])
        nest.status = "repaired"  # an operator marked it repaired; F2 did not fly near it
    # A third flight passes both places and sees nothing: clean passes, and the repair is confirmed.
    with session_scope(db_url) as s:
        from cloud.models import Flight

        s.add(Flight(id="F3", drone_id="UAV-07"))
        s.flush()
        passed = record_passes(s, "F3", [[25.29990, 103.09990], [25.30100, 103.10105], [25.40, 103.2]])
        assert {f.id for f in passed} >= {by_alert[first[0].id], by_alert[first[1].id]}
        record_passes(s, "F3", [[25.29990, 103.09990]])  # sent twice: counted once
    with session_scope(db_url) as s:
        fault, nest = s.get(Fault, by_alert[first[0].id]), s.get(Fault, by_alert[first[1].id])
        assert fault.clean_passes == 1 and fault.status == "open" and nest.status == "repair_confirmed"
        clean = s.scalars(select(FaultObservation).where(FaultObservation.seen.is_(False))).all()
        assert {o.flight_id for o in clean} == {"F3"}
        assert s.scalar(select(func.count()).select_from(Fault)) == 4


def test_the_apis_form_of_an_alert_is_the_wire_form_plus_the_clouds_fields(db_url):
    from cloud.alert_doc import api_doc
    from cloud.alerts import as_record

    a = _alert(3, time_restamped=True)
    with session_scope(db_url) as s:
        record(s, TOPIC, _mqtt(a))
    with session_scope(db_url) as s:
        row = s.get(Alert, a.id)
        wire = alert_json.to_json(as_record(row))
        wire.pop("schema")
        doc = api_doc(row)
        assert {k: doc[k] for k in wire} == wire and doc["flags"] == ["time_restamped"]
        assert {"status", "line_id", "span", "via", "conflict", "fault_id", "received_at"} <= doc.keys()


def _scenario() -> list[list[tuple[str, bytes]]]:
    """Batches of messages touching every rule: faults joined across flights and within a batch, a
    repaired fault seen again, classes and towers apart, BeiDou copies before and after the 4G
    copy, a twin in one batch, a copy that disagrees, a superseded epoch, and messages refused."""
    other = "pli/fleet1/UAV-08/alerts"
    f1 = [_alert(1, lat=25.30000, lon=103.10000), _alert(2, lat=25.30100, lon=103.10100, cls="bird_nest"),
          _alert(3, lat=25.30004, lon=103.10002), _alert(4, lat=25.30060, lon=103.10080, epoch=2)]
    f2 = [replace(_alert(i, lat=lat, lon=lon, cls=c), drone_id="UAV-08", flight_id="F2", epoch=1)
          for i, lat, lon, c in ((1, 25.30003, 103.10001, "defect"), (2, 25.30101, 103.10099, "bird_nest"),
                                 (3, 25.30030, 103.10000, "defect"), (4, 25.30001, 103.10000, "bird_nest"))]
    return [
        [(TOPIC, _beidou(f1[0])), (TOPIC, _mqtt(f1[0])), (TOPIC, _mqtt(f1[1])), (TOPIC, _mqtt(f1[2])),
         (TOPIC, _mqtt(f1[1])), (TOPIC, b"{broken"), (other, _mqtt(f1[3]))],
        [(TOPIC, _mqtt(f1[3])), (TOPIC, _mqtt(_alert(5, epoch=1, lat=25.4))), (other, _mqtt(f2[0])),
         (other, _mqtt(f2[1])), (TOPIC, _beidou(f1[2])), (TOPIC, _mqtt(replace(f1[1], lat=25.31)))],
        [(other, _beidou(f2[2])), (other, _mqtt(f2[3])), (other, _mqtt(f2[2])), (other, _mqtt(f2[0])),
         (TOPIC, _mqtt(_alert(6, lat=25.30002, lon=103.10001, epoch=2)))],
    ]


def _state(url) -> dict:
    from cloud.models import Drone, Flight

    def cols(row, skip=()):
        return {c.name: getattr(row, c.key) for c in row.__table__.c if c.name not in skip}

    with session_scope(url) as s:
        return {
            "alerts": sorted((cols(a, ("received_at",)) for a in s.scalars(select(Alert).options(
                undefer(Alert.thumbnail)))), key=lambda r: r["id"]),
            "faults": sorted((cols(f) for f in s.scalars(select(Fault))), key=lambda r: r["id"]),
            "observations": sorted((o.fault_id, o.flight_id or "", o.alert_id, o.seen) for o in s.scalars(
                select(FaultObservation))),
            "flights": sorted((f.id, f.drone_id, f.started_at, f.ended_at) for f in s.scalars(select(Flight))),
            "drones": sorted((d.id, d.highest_epoch, d.model_version) for d in s.scalars(select(Drone))),
            "copies": sorted((c.alert_id, c.via) for c in s.scalars(select(AlertCopy)))}


def test_a_batch_stores_exactly_what_the_messages_one_at_a_time_would(new_db):
    """The ingest's bulk path (`record_batch`) against `record`, message by message, on the same
    scenario: the same rows in every table, the same answers to the drones, and the bulk path's
    on-call notifications, one per new high-severity alert."""
    from cloud.alerts import record_batch
    from cloud.models import Notification

    one, bulk = new_db(), new_db()
    for url in (one, bulk):
        with session_scope(url) as s:
            import_towers(s, read_csv(TOWERS))
    answers: dict[str, list] = {one: [], bulk: []}
    published: list[str] = []
    for n, batch in enumerate(_scenario()):
        if n == 2:  # an operator marked the first fault repaired: a sighting reopens it
            for url in (one, bulk):
                with session_scope(url) as s:
                    s.get(Fault, 1).status = "repaired"
        with session_scope(one) as s:
            for topic, payload in batch:
                try:
                    with s.begin_nested():
                        o = record(s, topic, payload)
                    answers[one].append((o.verdict, o.ack, o.refusal))
                except IngestError:
                    answers[one].append("refused")
        with session_scope(bulk) as s:
            results, hooks = record_batch(s, batch, lambda topic, body: published.append(topic) or True)
            assert hooks == []  # no webhooks configured
            for (topic, payload), o in zip(batch, results, strict=True):
                if o is None:
                    with s.begin_nested():
                        o = record(s, topic, payload)
                answers[bulk].append("refused" if isinstance(o, IngestError) else (o.verdict, o.ack, o.refusal))
    assert answers[one] == answers[bulk]
    assert answers[one].count("refused") == 2 and ("conflict" in {a[0] for a in answers[one] if a != "refused"})
    a, b = _state(one), _state(bulk)
    for table in a:
        assert a[table] == b[table], table
    assert {f["status"] for f in b["faults"] if f["id"] == 1} == {"open"} and len(b["faults"]) >= 4
    assert any(x["tower_id"] for x in b["alerts"]) and {x["via"] for x in b["alerts"]} >= {"both", "mqtt"}
    with session_scope(bulk) as s:
        notes = s.scalars(select(Notification)).all()
        assert sorted(n.alert_id for n in notes) == sorted(x["id"] for x in b["alerts"] if x["severity"] == "high")
        assert all(n.status == "delivered" for n in notes) and set(published) == {"pli/fleet1/oncall"}


def test_placing_a_batch_agrees_with_nearest_even_across_long_spans(db_url):
    """`place_many` (one query for the batch's area) gives what `nearest` gives point by point,
    on a line whose spans (2.5 km) are longer than the area it loads around the batch."""
    import random

    from cloud.towers import TowerRow, place_many

    rows = [TowerRow("L9", f"T{i:02d}", 25.0 + i * 0.0225, 103.0 + i * 0.001, i) for i in range(6)]
    rng = random.Random(3)
    points = [(25.0 + rng.uniform(-0.003, 0.115), 103.0 + rng.uniform(-0.003, 0.006)) for _ in range(300)]
    with session_scope(db_url) as s:
        import_towers(s, rows)
    with session_scope(db_url) as s:
        batch = place_many(s, points)
        one = [nearest(s, lat, lon) for lat, lon in points]
    as_ids = [[None if r is None else (r[0].tower_id, r[1]) for r in side] for side in (batch, one)]
    assert as_ids[0] == as_ids[1] and sum(r is not None for r in one) > 20  # many points near a tower
