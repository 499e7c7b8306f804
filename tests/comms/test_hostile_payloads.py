"""Hostile and careless alert payloads through a real Mosquitto into the ingest worker: every one
ends stored, or refused with a reason the drone receives on its acks topic and stops resending;
none poisons what operators read (NaN, huge strings, wrong class or severity)."""

from __future__ import annotations

import json
import math

import pytest
from factories import new_alert
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from waiting import until

from cloud.db import session_scope
from cloud.models import Alert
from comms import alert_json
from comms.classes import Severity
from comms.mqtt_link import MqttConfig, MqttLink, acks_topic, alerts_topic, connect, make_client, parse_answer
from comms.outbox import ACKED, REJECTED, Outbox

pytestmark = pytest.mark.slow


class Drone:
    """A raw MQTT client as drone UAV-07: publishes documents, collects the cloud's answers."""

    def __init__(self, port: int):
        self.answers: list[tuple[set, list]] = []
        self.client = make_client("uav07-raw", MqttConfig(port=port))
        self.client.on_message = lambda c, u, m: self.answers.append(
            (lambda a: (set(a[0]), a[2]))(parse_answer(m.payload)))
        connect(self.client, MqttConfig(port=port))
        assert until(self.client.is_connected, 5)
        self.client.subscribe(acks_topic("fleet1", "UAV-07"), qos=1)

    def publish(self, payload: bytes) -> None:
        self.client.publish(alerts_topic("fleet1", "UAV-07"), payload, qos=1).wait_for_publish(5)

    def answer_for(self, alert_id: str) -> str | None:
        """'ack', or the refusal's reason and detail, once the cloud answered about `alert_id`."""
        for acks, refused in self.answers:
            if alert_id in acks:
                return "ack"
            for r in refused:
                if r["id"] == alert_id:
                    return f"{r['reason']}: {r.get('detail', '')}"
        return None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _doc(outbox: Outbox, /, **changes) -> dict:
    doc = alert_json.to_json(new_alert(outbox, class_list_version=2))
    doc.update(changes)
    return doc


HOSTILE = {
    "NaN box": dict(box=[math.nan] * 4),
    "NaN alt": dict(alt=math.nan),
    "infinite alt": dict(alt=math.inf),
    "alt in orbit": dict(alt=4e7),
    "100k-character class": dict(**{"class": "x" * 100_000}),
    "1 MB model version": dict(model_version="m" * 1_000_000),
    "class not in the list": dict(**{"class": "bomb"}),
    "insulator raises no alert": dict(**{"class": "insulator", "severity": "low"}),
    "bird nest claimed high": dict(**{"class": "bird_nest", "severity": "high"}),
    "unknown class-list version": dict(class_list_version=99),
    "flight id with a path": dict(flight_id="../../etc"),
    "model version as an object": dict(model_version={"$gt": ""}),
}


def test_each_hostile_payload_is_refused_with_a_reason_the_drone_receives(broker, ingest):
    worker, url = ingest
    box = Outbox(":memory:", "UAV-07")
    drone = Drone(broker.port)
    try:
        sent = {}
        for name, changes in HOSTILE.items():
            doc = _doc(box, **changes)
            sent[name] = doc["id"]
            drone.publish(json.dumps(doc).encode())  # Python writes NaN and Infinity as bare tokens, as a C drone might
        good = _doc(box)
        drone.publish(json.dumps(good).encode())
        assert until(lambda: all(drone.answer_for(i) for i in [*sent.values(), good["id"]]), 20), drone.answers
        for name, alert_id in sent.items():
            assert drone.answer_for(alert_id).startswith("invalid: "), name
        assert drone.answer_for(good["id"]) == "ack"
        reasons = {name: drone.answer_for(i) for name, i in sent.items()}
        assert "box must be finite" in reasons["NaN box"] and "alt must be finite" in reasons["NaN alt"]
        assert "is 1000000 characters long (at most 128)" in reasons["1 MB model version"]
        assert "severity high of bird_nest is not class list v2's medium" in reasons["bird nest claimed high"]
        assert "class-list version 99 is unknown" in reasons["unknown class-list version"]
    finally:
        drone.close()
    with session_scope(url) as s:
        assert list(s.scalars(select(Alert.id))) == [good["id"]]
    assert worker.stats.rejected == len(HOSTILE) and worker.stats.stored == 1


def test_a_drone_stops_resending_what_the_cloud_refused_as_invalid(broker, ingest, tmp_path):
    """The drone's own outbox: an alert of a class the fleet's lists do not have (a drone started with
    a hand-made PLI_CLASSES) is refused, kept as rejected with the reason, and never published
    again; the good one is acknowledged."""
    worker, _ = ingest
    box = Outbox(tmp_path / "o.db", "UAV-07")
    bad = new_alert(box, cls="corrosion", class_list_version=2)
    box.put(bad)
    good = new_alert(box, Severity.MEDIUM, "bird_nest")
    box.put(good)
    link = MqttLink(box, MqttConfig(port=broker.port), resend_after_s=0.2)
    link.start()
    try:
        assert until(lambda: box.counts() == {ACKED: 1, REJECTED: 1}, 20, link.pump), box.counts()
        seen = worker.stats.messages
        for _ in range(10):  # well past the resend interval: nothing goes again
            link.pump()
            until(lambda: False, 0.1)
        assert worker.stats.messages == seen
    finally:
        link.stop()
    status = box.status()
    assert status["rejected_by_cloud"] == 1 and status["safe_to_power_off"]
    row = box.db.execute("SELECT rejected FROM alerts WHERE id = ?", (bad.id,)).fetchone()
    assert "class 'corrosion' is not in class list v2" in row[0]


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=80),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)
FIELDS = ["id", "drone_id", "epoch", "seq", "flight_id", "time", "lat", "lon", "alt", "class", "confidence",
          "severity", "tower_id", "position_source", "class_list_version", "model_version", "source_frame",
          "frame_time", "box", "flags", "thumbnail_jpeg_b64"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, min_size=1, max_size=3),
       drop=st.lists(st.sampled_from(FIELDS), max_size=2))
def test_fuzzed_payloads_end_stored_or_refused_never_an_escaped_exception(broker, ingest, changes, drop):
    worker, url = ingest
    box = Outbox(":memory:", "UAV-07")
    doc = _doc(box)
    claimed = doc["id"]
    doc.update(changes)
    for k in drop:
        doc.pop(k, None)
    before = (worker.stats.stored + worker.stats.duplicates + worker.stats.conflicts, worker.stats.rejected)
    drone = Drone(broker.port)
    try:
        drone.publish(json.dumps(doc).encode())
        assert until(lambda: (worker.stats.stored + worker.stats.duplicates + worker.stats.conflicts,
                              worker.stats.rejected) != before, 10)
        if worker.stats.rejected > before[1]:
            reason = worker.stats.reasons[-1]
            assert "could not be stored" not in reason, reason  # a schema's refusal, not a bug caught late
            if (isinstance(doc.get("id"), str) and doc["id"] == claimed) or (
                    "id" not in doc and doc.get("epoch") == int(claimed.split("-")[-2]) and
                    doc.get("seq") == int(claimed.split("-")[-1])):
                assert until(lambda: drone.answer_for(claimed), 10)
    finally:
        drone.close()
    with session_scope(url) as s:
        s.scalar(select(func.count()).select_from(Alert))  # the database still answers


def test_every_number_and_text_the_wire_allows_fits_the_database(db_url):
    """On both databases: the largest sequence number (past PostgreSQL's int4) and the longest
    texts the schema lets through are stored; one character more is refused, never a 500 later."""
    from cloud.alerts import IngestError, record

    box = Outbox(":memory:", "UAV-07")
    widest = _doc(box, seq=2**32 - 1, tower_id="T" * 32, source_frame="f" * 255, model_version="m" * 128,
                  flight_id="F" * 64, beidou_refused="r" * 255)
    widest["id"] = f"UAV-07-{widest['epoch']:05d}-{2**32 - 1:010d}"
    with session_scope(db_url) as s:
        out = record(s, "pli/" + "f" * 64 + "/UAV-07/alerts", json.dumps(widest).encode())
    assert out.verdict == "new"
    with session_scope(db_url) as s:
        row = s.get(Alert, widest["id"])
        assert row.seq == 2**32 - 1 and len(row.tower_id) == 32 and len(row.source_frame) == 255
    for name, value in (("tower_id", "T" * 33), ("source_frame", "f" * 256), ("beidou_refused", "r" * 256)):
        with session_scope(db_url) as s, pytest.raises(IngestError, match=f"{name} is"):
            record(s, "pli/fleet1/UAV-07/alerts", json.dumps(_doc(box, **{name: value})).encode())
    with session_scope(db_url) as s, pytest.raises(IngestError, match="is not pli/<fleet>"):
        record(s, "pli/" + "f" * 65 + "/UAV-07/alerts", json.dumps(_doc(box)).encode())
