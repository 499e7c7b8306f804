"""Shared records: run in the full and in the edge-only environment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from comms.alert import MAX_EPOCH, MAX_SEQ, VALID_FROM, Alert, alert_id, parse_alert_id, restamp
from comms.classes import Severity, check_lineage, class_list_for, known_class_lists, load_class_list, parse_class_list
from edge.detections import Detections


def make_alert(**kw) -> Alert:
    base = dict(drone_id="UAV-07", seq=42, flight_id="F1", time=datetime(2026, 5, 1, 3, 0, tzinfo=UTC),
                lat=25.1, lon=102.7, alt=1900.0, fault_class="defect", confidence=0.8, severity=Severity.HIGH,
                epoch=3)
    base.update(kw)
    return Alert(**base)


def test_alert_id_depends_only_on_drone_epoch_and_sequence():
    a = make_alert()
    b = make_alert(confidence=0.5, lat=25.2, time=datetime(2026, 5, 1, 3, 5, tzinfo=UTC))
    assert a.id == b.id == "UAV-07-00003-0000000042"
    assert make_alert(seq=43).id != a.id
    assert make_alert(epoch=4).id != a.id  # a reflashed drone's 42 is another alert
    assert make_alert(drone_id="UAV-08").id != a.id
    assert parse_alert_id(a.id) == ("UAV-07", 3, 42)


@given(st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True), st.integers(0, MAX_EPOCH), st.integers(0, MAX_SEQ))
def test_alert_id_parses_back_whatever_the_drone_id(drone, epoch, seq):
    assert parse_alert_id(alert_id(drone, epoch, seq)) == (drone, epoch, seq)


@pytest.mark.parametrize("bad", ["", "with space", "x" * 33, "a/b"])
def test_alert_id_rejects_bad_drone_ids(bad):
    with pytest.raises(ValueError):
        alert_id(bad, 1, 1)


@pytest.mark.parametrize("bad", ["UAV-07-0000000042", "UAV-07-3-0000000042", "UAV-07-00003-42", "-00003-0000000042",
                                 "UAV-07-99999-0000000042"])
def test_parse_alert_id_refuses_what_is_not_canonical(bad):
    with pytest.raises(ValueError):
        parse_alert_id(bad)


def test_times_before_2020_are_restamped_from_gnss_else_receipt_and_flagged():
    unset, gnss, now = datetime(2000, 1, 1, tzinfo=UTC), datetime(2026, 5, 1, 3, tzinfo=UTC), datetime.now(UTC)
    assert restamp(gnss, None, now) == (gnss, False)
    assert restamp(unset, gnss, now) == (gnss, True)
    assert restamp(unset, None, now) == (now, True)
    assert restamp(None, unset, now) == (now, True)
    assert restamp(unset, None, unset)[1] and VALID_FROM.year == 2020  # no clock at all: flagged, kept


def test_alert_validates_and_normalises_time():
    local = datetime(2026, 5, 1, 11, 0, tzinfo=timezone(timedelta(hours=8)))
    assert make_alert(time=local).time == datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        make_alert(time=datetime(2026, 5, 1))  # naive
    with pytest.raises(ValueError):
        make_alert(lat=91.0)
    with pytest.raises(ValueError):
        make_alert(confidence=1.5)
    with pytest.raises(ValueError):
        make_alert(position_source="guess")


def test_default_class_list_and_alert_rules():
    classes = load_class_list()
    assert classes.names == ["insulator", "defect", "bird_nest"]
    assert classes.severity_of("defect") is Severity.HIGH
    assert classes.severity_of("bird_nest") is Severity.MEDIUM
    assert classes.severity_of("insulator") is None
    assert classes.fault_names == ["defect", "bird_nest"]


def test_class_list_versions_only_grow_at_the_end(tmp_path):
    lists = known_class_lists()
    assert lists[1].names == load_class_list().names and lists[1].version == load_class_list().version == 1
    assert lists[2].names == [*lists[1].names, "flashover"] and lists[2].severity_of("flashover") is Severity.MEDIUM
    assert class_list_for(lists[2].names).version == 2 and class_list_for(lists[1].names).version == 1
    reordered = parse_class_list('version = 3\n[[class]]\nname = "defect"\nfault = true\nseverity = "high"\n')
    with pytest.raises(ValueError, match="only ever appended"):
        check_lineage({**lists, 3: reordered})
    (tmp_path / "1.toml").write_text('version = 2\n[[class]]\nname = "a"\n')
    with pytest.raises(ValueError, match="named after its version"):
        known_class_lists(tmp_path)
    with pytest.raises(ValueError, match="match no known class list"):
        class_list_for(["damper"])


def test_a_configured_list_claiming_a_known_version_must_be_that_version(tmp_path, monkeypatch):
    path = tmp_path / "classes.toml"
    path.write_text('version = 1\n[[class]]\nname = "damper"\nfault = true\nseverity = "low"\n')
    monkeypatch.setenv("PLI_CLASSES", str(path))
    with pytest.raises(ValueError, match="differs from the known version 1"):
        load_class_list()


def test_class_list_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "classes.toml"
    path.write_text('[[class]]\nname = "damper"\nfault = true\nseverity = "low"\n')
    monkeypatch.setenv("PLI_CLASSES", str(path))
    classes = load_class_list()
    assert classes.names == ["damper"] and classes.severity_of("damper") is Severity.LOW


@pytest.mark.parametrize("text", [
    "",
    '[[class]]\nname = "a"\nfault = true\n',  # fault without severity
    '[[class]]\nname = "a"\n[[class]]\nname = "a"\n',  # duplicate
    '[[class]]\nname = "a"\nfault = true\nseverity = "urgent"\n',
])
def test_class_list_rejects_bad_configuration(text):
    with pytest.raises(ValueError):
        parse_class_list(text)


def test_detections_struct_of_arrays():
    names = ["insulator", "defect", "bird_nest"]
    d = Detections([[0, 0, 10, 20], [5, 5, 7, 9], [1, 1, 2, 2]], [0.9, 0.4, 0.7], [0, 1, 2], names)
    assert len(d) == 3 and d.xyxy.dtype == np.float32
    np.testing.assert_allclose(d.area, [200, 8, 1])
    kept = d[d.confidence > 0.5]
    assert kept.names == ["insulator", "bird_nest"]
    assert d[1].names == ["defect"] and d[-1].names == ["bird_nest"]
    merged = Detections.merge([d, kept])
    assert len(merged) == 5 and merged.class_names == names
    assert len(Detections.empty(names)) == 0
    with pytest.raises(ValueError):
        Detections([[0, 0, 1, 1]], [0.5, 0.6], [0])
    with pytest.raises(ValueError):
        Detections([[0, 0, 1, 1]], [0.5], [3], names)


def test_provider_list_falls_back_to_cpu_with_one_log_line(caplog, tmp_path):
    import logging

    from edge.detector import resolve_providers

    with caplog.at_level(logging.INFO, logger="edge.detector"):
        chosen = resolve_providers(trt_cache=tmp_path / "trt")
    names = [p[0] if isinstance(p, tuple) else p for p in chosen]
    assert names[-1] == "CPUExecutionProvider"
    assert len([r for r in caplog.records if "not available" in r.getMessage()]) <= 1
    trt = [p for p in chosen if isinstance(p, tuple)]
    assert all(opts["trt_fp16_enable"] and opts["trt_engine_cache_enable"] for _, opts in trt)
    assert resolve_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
