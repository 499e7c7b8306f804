"""Link selection: thresholds, hysteresis, reasons."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from comms.selector import BEIDOU, HOLD, MQTT, LinkSelector, SelectorConfig, parse_csq


def test_parse_csq():
    assert parse_csq("\r\n+CSQ: 17,99\r\n\r\nOK\r\n") == 17
    assert parse_csq("+CSQ: 99,99") is None and parse_csq("ERROR") is None


def test_failover_to_beidou_at_once_and_back_after_the_hysteresis_window():
    sel = LinkSelector(SelectorConfig(csq_good=15, csq_bad=9, hold_s=30))
    assert sel.update(0, 20, True, True) == MQTT  # at start a good signal is enough
    assert sel.update(40, 5, True, True) == BEIDOU  # signal dropped: at once
    assert "CSQ 5" in sel.history[-1].reason
    assert sel.update(41, 25, True, True) == BEIDOU  # back, but not held long enough
    assert sel.update(60, 25, True, True) == BEIDOU
    assert sel.update(71, 25, True, True) == MQTT  # 30 s of good signal
    assert sel.update(72, 25, False, False) == HOLD and "broker unreachable" in sel.history[-1].reason


def test_mqtt_stays_between_the_thresholds():
    sel = LinkSelector(SelectorConfig(csq_good=15, csq_bad=9, hold_s=0))
    assert sel.update(0, 20, True, True) == MQTT
    assert sel.update(1, 10, True, True) == MQTT  # 10 > 9: still usable


@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 31)), st.booleans(), st.booleans()), max_size=80))
def test_every_switch_is_logged_and_mqtt_needs_a_held_good_signal(samples):
    sel = LinkSelector(SelectorConfig(csq_good=15, csq_bad=9, hold_s=5))
    good_since = None
    for t, (csq, broker, beams) in enumerate(samples):
        before = sel.link
        link = sel.update(float(t), csq, broker, beams)
        good = broker and csq is not None and csq >= 15
        good_since = (t if good_since is None else good_since) if good else None
        if link != before:
            assert sel.history[-1].link == link and sel.history[-1].at == t and sel.history[-1].reason
        if link == MQTT and before != MQTT and len(sel.history) > 1:  # a return, not the start
            assert good_since is not None and t - good_since >= 5
        if link == BEIDOU:
            assert beams
