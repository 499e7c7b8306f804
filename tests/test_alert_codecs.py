"""Alert codecs: the JSON form for MQTT, the packed and signed form for BeiDou, replay guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms import alert_json
from comms.alert import MAX_SEQ, Alert
from comms.alert_pack import MAX_COUNT, PackError, pack, peek_key_id, unpack
from comms.classes import Severity, load_class_list
from comms.replay import WINDOW, ReplayGuard

KEY = b"k" * 32
KEYS = {7: ("UAV-07", KEY)}
CLASSES = load_class_list()
LEVEL3_MIXED = 77  # bytes of payload per message on a level-3 civil card in mixed mode

alerts = st.builds(
    Alert,
    drone_id=st.just("UAV-07"),
    seq=st.integers(0, MAX_SEQ),
    flight_id=st.just(""),
    time=st.integers(0, 10 * 365 * 86400).map(lambda s: datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=s)),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    alt=st.floats(-500, 9000),
    fault_class=st.sampled_from(CLASSES.names),
    confidence=st.floats(0, 1),
    severity=st.sampled_from(list(Severity)),
    tower_id=st.one_of(st.none(), st.integers(0, 999).map(lambda n: f"T{n:02d}"), st.just("N-12")),
    position_source=st.sampled_from(["projected", "drone"]),
)


def _close_in_time(batch: list[Alert]) -> list[Alert]:
    t0 = batch[0].time
    return [Alert(a.drone_id, a.seq, a.flight_id, t0 + timedelta(seconds=i * 37), a.lat, a.lon, a.alt,
                  a.fault_class, a.confidence, a.severity, a.tower_id, position_source=a.position_source)
            for i, a in enumerate(batch)]


@settings(max_examples=200, deadline=None)
@given(st.lists(alerts, min_size=1, max_size=MAX_COUNT).map(_close_in_time), st.integers(40, 400))
def test_pack_round_trip(batch, capacity):
    packed = pack(batch, 7, KEY, capacity)
    assert len(packed.payload) <= capacity and packed.alerts == tuple(batch[: len(packed.alerts)])
    back = unpack(packed.payload, KEYS.get)
    assert len(back) == len(packed.alerts) >= 1
    for a, b in zip(packed.alerts, back, strict=True):
        assert b.id == a.id and b.time == a.time and b.fault_class == a.fault_class
        assert b.severity == a.severity and b.position_source == a.position_source
        assert abs(b.lat - a.lat) <= 1e-7 and abs(b.lon - a.lon) <= 1e-7
        assert abs(b.confidence - a.confidence) <= 1 / 510 + 1e-9
        assert abs(b.alt - max(-32768, min(32767, a.alt))) <= 0.5
        assert b.tower_id == (a.tower_id if a.tower_id and a.tower_id.startswith("T") else None)


@settings(max_examples=100, deadline=None)
@given(st.lists(alerts, min_size=1, max_size=4).map(_close_in_time), st.data())
def test_any_flipped_bit_is_rejected(batch, data):
    payload = pack(batch, 7, KEY, LEVEL3_MIXED).payload
    bit = data.draw(st.integers(0, len(payload) * 8 - 1))
    flipped = bytearray(payload)
    flipped[bit // 8] ^= 1 << (bit % 8)
    keys = {7: ("UAV-07", KEY), peek_key_id(bytes(flipped)): ("UAV-X", KEY)}  # a flipped key id still finds a key
    with pytest.raises(PackError):
        unpack(bytes(flipped), keys.get)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_give_only_pack_errors(blob):
    with pytest.raises(PackError):
        unpack(blob, lambda key_id: ("UAV-07", KEY))


def test_three_alerts_with_towers_fit_a_level3_message():
    t = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    batch = [Alert("UAV-07", 1000 + i, "F1", t + timedelta(seconds=i), 25.2 + i / 1e4, 102.5, 1650.0, "defect",
                   0.9, Severity.HIGH, tower_id=f"T{i:02d}", position_source="projected") for i in range(5)]
    packed = pack(batch, 7, KEY, LEVEL3_MIXED)
    assert len(packed.alerts) == 3 and len(packed.payload) <= LEVEL3_MIXED
    assert [a.id for a in unpack(packed.payload, KEYS.get)] == [a.id for a in batch[:3]]


def test_wrong_key_unknown_key_and_truncation_are_rejected():
    a = Alert("UAV-07", 5, "F1", datetime(2026, 1, 1, tzinfo=UTC), 1.0, 2.0, 3.0, "bird_nest", 0.5, Severity.MEDIUM)
    payload = pack([a], 7, KEY, LEVEL3_MIXED).payload
    with pytest.raises(PackError, match="tag"):
        unpack(payload, lambda k: ("UAV-07", b"another key"))
    with pytest.raises(PackError, match="unknown key id"):
        unpack(payload, lambda k: None)
    for n in range(len(payload)):
        with pytest.raises(PackError):
            unpack(payload[:n], KEYS.get)


@settings(max_examples=200, deadline=None)
@given(alerts, st.one_of(st.none(), st.binary(min_size=1, max_size=64)))
def test_json_round_trip(alert, thumb):
    back, back_thumb = alert_json.loads(alert_json.dumps(alert, thumb))
    assert back == alert and back.id == alert.id and back_thumb == thumb


@pytest.mark.parametrize("doc, problem", [
    ("{", "does not parse"),
    ('{"schema": "pli.alert/0"}', "schema"),
    ('{"schema": "pli.alert/1", "drone_id": "U"}', "lacks field"),
])
def test_bad_json_alerts_are_named(doc, problem):
    with pytest.raises(ValueError, match=problem):
        alert_json.loads(doc)


def test_json_id_must_agree_with_drone_and_seq():
    a = Alert("UAV-07", 5, "F1", datetime(2026, 1, 1, tzinfo=UTC), 1.0, 2.0, 3.0, "defect", 0.5, Severity.HIGH)
    doc = alert_json.to_json(a) | {"id": "UAV-07-0000000006"}
    with pytest.raises(ValueError, match="disagrees"):
        alert_json.from_json(doc)


def test_replay_guard_refuses_replays_across_restarts_and_accepts_late_alerts(tmp_path):
    guard = ReplayGuard(tmp_path / "replay.db")
    assert guard.accept("UAV-07", [10, 12]) == [True, True]
    assert guard.accept("UAV-07", [11, 12]) == [True, False]  # 11 came late (priority order): still new
    guard.close()
    again = ReplayGuard(tmp_path / "replay.db")
    assert again.highest("UAV-07") == 12
    assert again.accept("UAV-07", [10, 11, 12]) == [False, False, False]
    assert again.accept("UAV-07", [12 + WINDOW, 12]) == [True, False]  # 12 is now outside the window
    assert again.accept("UAV-08", [10]) == [True]  # per drone


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=60))
def test_replay_guard_matches_a_set_within_the_window(seqs):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        guard = ReplayGuard(f"{d}/r.db")
        seen: set[int] = set()
        highest = -1
        for s in seqs:
            expected = s not in seen and (s > highest or highest - s < WINDOW)
            assert guard.accept("D", [s]) == [expected]
            if expected:
                seen.add(s)
                highest = max(highest, s)
        guard.close()


@given(st.lists(st.integers(1, 2**32 - 70_000), min_size=1, max_size=40), st.integers(13, 120))
def test_ack_round_trip_acknowledges_exactly_what_it_says(seqs, capacity):
    from comms.alert_pack import pack_ack, unpack_ack

    payload, chosen = pack_ack(seqs, 7, KEY, capacity)
    assert len(payload) <= capacity and chosen and set(chosen) <= set(seqs)
    assert chosen == sorted(chosen) and chosen[0] == min(seqs)  # the oldest first
    assert unpack_ack(payload, 7, KEY) == chosen


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=15), st.data())
def test_a_flipped_bit_in_an_ack_or_an_alert_message_passed_as_one_is_rejected(seqs, data):
    from comms.alert_pack import pack_ack, unpack_ack

    payload, _ = pack_ack(seqs, 7, KEY)
    bit = data.draw(st.integers(0, len(payload) * 8 - 1))
    bad = bytearray(payload)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(PackError):
        unpack_ack(bytes(bad), 7, KEY)
    with pytest.raises(PackError):  # an acknowledgement is never read as alerts, nor the other way
        unpack(payload, lambda k: ("UAV-07", KEY))
    with pytest.raises(PackError):
        unpack_ack(payload, 8, KEY)  # another drone's
