"""Shared records: run in the full and in the edge-only environment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from comms.alert import Alert, alert_id, parse_alert_id
from comms.classes import Severity, load_class_list, parse_class_list
from edge.detections import Detections


def make_alert(**kw) -> Alert:
    base = dict(drone_id="UAV-07", seq=42, flight_id="F1", time=datetime(2026, 5, 1, 3, 0, tzinfo=UTC),
                lat=25.1, lon=102.7, alt=1900.0, fault_class="defect", confidence=0.8, severity=Severity.HIGH)
    base.update(kw)
    return Alert(**base)


def test_alert_id_depends_only_on_drone_and_sequence():
    a = make_alert()
    b = make_alert(confidence=0.5, lat=25.2, time=datetime(2026, 5, 1, 3, 5, tzinfo=UTC))
    assert a.id == b.id == "UAV-07-0000000042"
    assert make_alert(seq=43).id != a.id
    assert make_alert(drone_id="UAV-08").id != a.id
    assert parse_alert_id(a.id) == ("UAV-07", 42)


@pytest.mark.parametrize("bad", ["", "with space", "x" * 33, "a/b"])
def test_alert_id_rejects_bad_drone_ids(bad):
    with pytest.raises(ValueError):
        alert_id(bad, 1)


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
