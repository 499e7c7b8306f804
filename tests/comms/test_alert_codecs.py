"""Alert codecs: the JSON form for MQTT, the packed and signed form for BeiDou, replay guard."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms import alert_json
from comms.alert import BEIDOU_POSITION_SOURCES, MAX_EPOCH, MAX_SEQ, POSITION_SOURCES, Alert
from comms.alert_pack import (
    MAX_COUNT,
    SUPERSEDED,
    TOO_OLD,
    UNKNOWN_CLASS_LIST,
    Ack,
    PackError,
    Refusal,
    UnknownClassList,
    pack,
    pack_ack,
    pack_refusal,
    peek_key_id,
    unpack,
    unpack_ack,
    unpack_answer,
)
from comms.classes import Severity, known_class_lists
from comms.replay import NEW, REPLAY, WINDOW, ReplayGuard, digest

KEY = b"k" * 32
KEYS = {7: ("UAV-07", KEY)}
LISTS = known_class_lists()
LEVEL3_MIXED = 77  # bytes of payload per message on a level-3 civil card in mixed mode
BDS3_GLOBAL = 70  # 560 bits as code


def _fault_classes(version: int) -> list[str]:
    return LISTS[version].fault_names


@st.composite
def alerts(draw, epoch=None, version=None):
    version = draw(st.sampled_from(sorted(LISTS))) if version is None else version
    name = draw(st.sampled_from(_fault_classes(version)))
    return Alert(
        "UAV-07", draw(st.integers(0, MAX_SEQ)), draw(st.sampled_from(["", "F1"])),
        draw(st.integers(0, 10 * 365 * 86400).map(lambda s: datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=s))),
        draw(st.floats(-90, 90)), draw(st.floats(-180, 180)), draw(st.floats(-500, 9000)), name,
        draw(st.floats(0, 1)), LISTS[version].severity_of(name),
        tower_id=draw(st.one_of(st.none(), st.integers(0, 999).map(lambda n: f"T{n:02d}"), st.just("N-12"))),
        position_source=draw(st.sampled_from(POSITION_SOURCES)),
        epoch=draw(st.integers(0, MAX_EPOCH)) if epoch is None else epoch, class_list_version=version,
        model_version=draw(st.one_of(st.none(), st.just("pli-default/2026.11.22"))),
        source_frame=draw(st.one_of(st.none(), st.just("DJI_0042.JPG"), st.just("flight_000123"))),
        box=draw(st.one_of(st.none(), st.tuples(*[st.floats(0, 4000)] * 2).map(lambda p: (*p, p[0] + 9, p[1] + 5)))),
        time_restamped=draw(st.booleans()), telemetry_stale=draw(st.booleans()),
        position_error_m=draw(st.one_of(st.none(), st.floats(0, 5000))))


@st.composite
def batches(draw, max_size=MAX_COUNT):
    """Alerts that may share a message: one epoch and class-list version, times close together."""
    epoch, version = draw(st.integers(0, MAX_EPOCH)), draw(st.sampled_from(sorted(LISTS)))
    batch = draw(st.lists(alerts(epoch, version), min_size=1, max_size=max_size))
    t0 = batch[0].time
    return [replace(a, time=t0 + timedelta(seconds=i * 37)) for i, a in enumerate(batch)]


@settings(max_examples=200, deadline=None)
@given(batches(), st.integers(40, 400))
def test_pack_round_trip(batch, capacity):
    packed = pack(batch, 7, KEY, capacity)
    assert len(packed.payload) <= capacity and packed.alerts == tuple(batch[: len(packed.alerts)])
    back = unpack(packed.payload, KEYS.get)
    assert len(back.alerts) == len(packed.alerts) >= 1
    assert (back.epoch, back.class_list_version, back.key_id) == (batch[0].epoch, batch[0].class_list_version, 7)
    for a, b in zip(packed.alerts, back.alerts, strict=True):
        assert b.id == a.id and b.time == a.time and b.fault_class == a.fault_class
        beidou_source = a.position_source if a.position_source in BEIDOU_POSITION_SOURCES else "other"
        assert b.severity == a.severity and b.position_source == beidou_source  # two bits: later ones "other"
        assert b.time_restamped == a.time_restamped and b.class_list_version == a.class_list_version
        assert abs(b.lat - a.lat) <= 1e-7 and abs(b.lon - a.lon) <= 1e-7
        assert abs(b.confidence - a.confidence) <= 1 / 510 + 1e-9
        assert abs(b.alt - max(-32768, min(32767, a.alt))) <= 0.5
        assert b.tower_id == (a.tower_id if a.tower_id and a.tower_id.startswith("T") else None)


@settings(max_examples=100, deadline=None)
@given(batches(max_size=4), st.data())
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
    with pytest.raises(PackError):
        unpack_answer(blob, 7, KEY)


def _defects(n: int, epoch: int = 3, version: int = 1, towers: bool = True) -> list[Alert]:
    t = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    return [Alert("UAV-07", 1000 + i, "F1", t + timedelta(seconds=i), 25.2 + i / 1e4, 102.5, 1650.0, "defect",
                  0.9, Severity.HIGH, tower_id=f"T{i:02d}" if towers else None, position_source="laser", epoch=epoch,
                  class_list_version=version) for i in range(n)]


def test_three_alerts_with_towers_fill_a_level3_message_exactly_and_bds3_holds_two():
    batch = _defects(5)
    packed = pack(batch, 7, KEY, LEVEL3_MIXED)
    assert len(packed.alerts) == 3 and len(packed.payload) == LEVEL3_MIXED  # 10 + 3 x 21 + 4
    assert [a.id for a in unpack(packed.payload, KEYS.get).alerts] == [a.id for a in batch[:3]]
    assert len(pack(batch, 7, KEY, BDS3_GLOBAL).alerts) == 2
    assert len(pack(_defects(5, towers=False), 7, KEY, BDS3_GLOBAL).alerts) == 2  # 10 + 2 x 19 + 4 = 52; 3 = 71


def test_a_class_list_version_is_configured_for_a_block_and_restored_after(monkeypatch):
    from comms.classes import ENV_VAR, load_class_list, using_class_list

    monkeypatch.delenv(ENV_VAR, raising=False)
    with using_class_list(2):
        assert load_class_list().names == LISTS[2].names
    assert ENV_VAR not in os.environ
    monkeypatch.setenv(ENV_VAR, "/somewhere/else.toml")
    with pytest.raises(RuntimeError), using_class_list(1):
        assert load_class_list().names == LISTS[1].names
        raise RuntimeError("an import that fails")
    assert os.environ[ENV_VAR] == "/somewhere/else.toml"
    with using_class_list(None):
        assert os.environ[ENV_VAR] == "/somewhere/else.toml"


def test_one_message_carries_one_epoch_and_one_class_list_version():
    old, new = _defects(2, epoch=3), [replace(a, seq=a.seq + 10) for a in _defects(2, epoch=4)]
    canary = [replace(a, seq=a.seq + 20, class_list_version=2) for a in _defects(1, epoch=3)]
    packed = pack([old[0], *new, *canary, old[1]], 7, KEY, LEVEL3_MIXED)
    assert packed.alerts == (old[0], old[1])
    assert unpack(packed.payload, KEYS.get).epoch == 3


def test_a_new_class_travels_under_its_list_version_and_an_unknown_version_is_named():
    t = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    flash = Alert("UAV-07", 9, "F1", t, 25.0, 102.0, 1500.0, "flashover", 0.8, Severity.MEDIUM, epoch=2,
                  class_list_version=2)
    payload = pack([flash], 7, KEY, LEVEL3_MIXED).payload
    assert [a.fault_class for a in unpack(payload, KEYS.get).alerts] == ["flashover"]
    with pytest.raises(UnknownClassList) as info:  # a station that knows version 1 only
        unpack(payload, KEYS.get, {1: LISTS[1]})
    assert (info.value.version, info.value.epoch, info.value.seqs) == (2, 2, [9])


def test_what_can_never_be_packed_comes_back_with_the_reason():
    good = _defects(1)[0]
    bad = [replace(good, seq=2, class_list_version=None), replace(good, seq=3, fault_class="flashover"),
           replace(good, seq=4, class_list_version=9), replace(good, seq=5, time=datetime(2019, 1, 1, tzinfo=UTC))]
    packed = pack([*bad, good], 7, KEY, LEVEL3_MIXED)
    assert packed.alerts == (good,)
    assert [a.seq for a, _ in packed.unpackable] == [2, 3, 4, 5]
    reasons = " | ".join(why for _, why in packed.unpackable)
    assert "no version" in reasons and "not in class-list version 1" in reasons and "2020" in reasons
    assert pack(bad, 7, KEY, LEVEL3_MIXED).payload == b""  # nothing to send, nothing raised


def test_wrong_key_unknown_key_and_truncation_are_rejected():
    payload = pack(_defects(1), 7, KEY, LEVEL3_MIXED).payload
    with pytest.raises(PackError, match="tag"):
        unpack(payload, lambda k: ("UAV-07", b"another key"))
    with pytest.raises(PackError, match="unknown key id"):
        unpack(payload, lambda k: None)
    for n in range(len(payload)):
        with pytest.raises(PackError):
            unpack(payload[:n], KEYS.get)


@settings(max_examples=200, deadline=None)
@given(alerts(), st.one_of(st.none(), st.binary(min_size=1, max_size=64)))
def test_json_round_trip_keeps_the_provenance(alert, thumb):
    back, back_thumb = alert_json.loads(alert_json.dumps(alert, thumb))
    assert back == alert and back.id == alert.id and back_thumb == thumb
    doc = alert_json.to_json(alert)
    assert doc["flags"] == [f for f, on in (("time_restamped", alert.time_restamped),
                                            ("telemetry_stale", alert.telemetry_stale)) if on]
    assert doc["position_error_m"] == alert.position_error_m
    assert doc["box"] == (list(alert.box) if alert.box else None) and doc["model_version"] == alert.model_version


@pytest.mark.parametrize("doc, problem", [
    ("{", "does not parse"),
    ('{"schema": "pli.alert/0"}', "schema"),
    ('{"schema": "pli.alert/2", "drone_id": "U"}', "lacks field"),
])
def test_bad_json_alerts_are_named(doc, problem):
    with pytest.raises(ValueError, match=problem):
        alert_json.loads(doc)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e9, "3"])
def test_a_position_error_that_is_no_distance_is_refused(value):
    doc = alert_json.to_json(_defects(1)[0]) | {"position_error_m": value}
    with pytest.raises(ValueError, match="position_error_m"):
        alert_json.from_json(doc)


def test_json_id_must_agree_with_drone_epoch_and_seq():
    a = _defects(1)[0]
    for wrong in ("UAV-07-00003-0000000006", "UAV-07-00004-0000001000"):
        with pytest.raises(ValueError, match="disagrees"):
            alert_json.from_json(alert_json.to_json(a) | {"id": wrong})


def test_replay_guard_refuses_replays_across_restarts_and_accepts_late_alerts(tmp_path):
    guard = ReplayGuard(tmp_path / "replay.db")
    assert guard.accept("UAV-07", 1, [10, 12]) == [NEW, NEW]
    assert guard.accept("UAV-07", 1, [11, 12]) == [NEW, REPLAY]  # 11 came late (priority order): still new
    guard.close()
    again = ReplayGuard(tmp_path / "replay.db")
    assert again.highest("UAV-07", 1) == 12
    assert again.accept("UAV-07", 1, [10, 11, 12]) == [REPLAY] * 3
    assert again.accept("UAV-07", 1, [12 + WINDOW, 12]) == [NEW, TOO_OLD]  # 12 is now outside the window
    assert again.accept("UAV-08", 1, [10]) == [NEW]  # per drone


def test_replay_guard_epochs_new_epochs_replays_of_old_ones_and_superseded_numbers(tmp_path):
    guard = ReplayGuard(tmp_path / "replay.db")
    assert guard.accept("UAV-07", 3, [1, 2]) == [NEW, NEW]
    assert guard.accept("UAV-07", 4, [1]) == [NEW]  # the same number in a new epoch is another alert
    assert guard.check("UAV-07", 3, [2, 3]) == [REPLAY, SUPERSEDED]  # late copy of an old one; a new old one
    assert guard.check("UAV-07", 1, [1]) == [SUPERSEDED]  # a restored outbox's epoch
    assert guard.highest_epoch("UAV-07") == 4 and guard.highest_epoch("UAV-09") is None


def test_a_reused_number_with_other_content_is_no_replay(tmp_path):
    guard = ReplayGuard(tmp_path / "replay.db")
    first, other = _defects(1, epoch=4)[0], replace(_defects(1, epoch=4)[0], lat=25.3)  # same id, another fault
    assert guard.accept("UAV-07", 4, [first.seq], [digest(first)]) == [NEW]
    assert guard.check("UAV-07", 4, [first.seq], [digest(first)]) == [REPLAY]  # a late copy: acknowledge again
    # a wiped or restored outbox numbered another alert the same: acknowledging it would lose it
    assert guard.check("UAV-07", 4, [other.seq], [digest(other)]) == [SUPERSEDED]
    assert digest(replace(first, flight_id="F9", crop_path="x.jpg")) == digest(first)  # what BeiDou cannot carry


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=60))
def test_replay_guard_matches_a_set_within_the_window(seqs):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        guard = ReplayGuard(f"{d}/r.db")
        seen: set[int] = set()
        highest = -1
        for s in seqs:
            expected = NEW if s not in seen and (s > highest or highest - s < WINDOW) else (
                REPLAY if s in seen and highest - s < WINDOW else TOO_OLD)
            assert guard.accept("D", 1, [s]) == [expected]
            if expected == NEW:
                seen.add(s)
                highest = max(highest, s)
        guard.close()


@given(st.lists(st.integers(1, 2**32 - 70_000), min_size=1, max_size=40), st.integers(0, MAX_EPOCH),
       st.integers(17, 120))
def test_ack_round_trip_acknowledges_exactly_what_it_says_in_its_epoch(seqs, epoch, capacity):
    payload, chosen = pack_ack(seqs, 7, KEY, epoch, capacity)
    assert len(payload) <= capacity and chosen and set(chosen) <= set(seqs)
    assert chosen == sorted(chosen) and chosen[0] == min(seqs)  # the oldest first
    assert unpack_ack(payload, 7, KEY) == Ack(epoch, chosen)
    checks = {s: digest_of(s) for s in seqs}
    checked, chosen2 = pack_ack(seqs, 7, KEY, epoch, capacity, checks)
    assert len(checked) <= capacity and chosen2 == chosen[:len(chosen2)] and chosen2
    assert unpack_ack(checked, 7, KEY) == Ack(epoch, chosen2, [checks[s][:2] for s in chosen2])


def digest_of(seq: int) -> bytes:
    return seq.to_bytes(4, "big")[::-1] + b"xyzw"


def test_fifteen_checked_acknowledgements_fit_a_level3_message():
    payload, chosen = pack_ack(range(1, 40), 7, KEY, 3, LEVEL3_MIXED, {s: digest_of(s) for s in range(1, 40)})
    assert len(chosen) == 15 and len(payload) == 9 + 15 * 4 + 4 <= LEVEL3_MIXED


@given(st.sampled_from([TOO_OLD, UNKNOWN_CLASS_LIST, SUPERSEDED]), st.integers(0, MAX_EPOCH),
       st.integers(0, 0xFFFF), st.lists(st.integers(1, 2**32 - 70_000), min_size=1, max_size=40))
def test_refusal_round_trip(reason, epoch, detail, seqs):
    payload, chosen = pack_refusal(Refusal(reason, epoch, seqs, detail), 7, KEY)
    back = unpack_answer(payload, 7, KEY)
    assert back == Refusal(reason, epoch, chosen, detail) and len(payload) <= LEVEL3_MIXED
    assert back.highest_epoch == (detail if reason == SUPERSEDED else None)
    with pytest.raises(PackError):  # a refusal is not an acknowledgement
        unpack_ack(payload, 7, KEY)


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=15), st.data())
def test_a_flipped_bit_in_an_answer_or_an_alert_message_passed_as_one_is_rejected(seqs, data):
    payload, _ = pack_ack(seqs, 7, KEY, 3)
    refusal, _ = pack_refusal(Refusal(SUPERSEDED, 3, seqs, 5), 7, KEY)
    for message in (payload, refusal):
        bit = data.draw(st.integers(0, len(message) * 8 - 1))
        bad = bytearray(message)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PackError):
            unpack_answer(bytes(bad), 7, KEY)
        with pytest.raises(PackError):  # an answer is never read as alerts, nor the other way
            unpack(message, lambda k: ("UAV-07", KEY))
        with pytest.raises(PackError):
            unpack_answer(message, 8, KEY)  # another drone's
    with pytest.raises(PackError):
        unpack_answer(pack(_defects(1), 7, KEY, LEVEL3_MIXED).payload, 7, KEY)
