"""The three dialects' mappings: what the simulator writes is what the driver reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comms.beidou.dialects import DIALECTS, Beams, Card, Feedback, Message, SendRequest
from comms.beidou.protocol import TEXT_BDS3, decode_any, decode_binary, decode_text, encode_binary, encode_text

addresses = st.integers(1, 2**21 - 1).map(lambda n: f"{n:07d}")  # 7 digits that fit 3 bytes
payloads = st.binary(min_size=0, max_size=77)


@pytest.mark.parametrize("name", list(DIALECTS))
@given(own=addresses, sender=addresses, content=payloads)
def test_a_delivered_message_reads_back_as_sent(name, own, sender, content):
    d = DIALECTS[name]
    assert d.event(decode_any(d.message(own, sender, content))) == Message(sender, content)


@pytest.mark.parametrize("name", list(DIALECTS))
@given(own=addresses, to=addresses, content=payloads)
def test_a_send_request_reads_back_as_sent(name, own, to, content):
    d = DIALECTS[name]
    assert d.request(decode_any(d.send(own, to, content))) == SendRequest(to, content)


@pytest.mark.parametrize("name", list(DIALECTS))
@given(address=addresses, freq=st.integers(1, 3600), level=st.integers(1, 4))
def test_the_card_reads_back(name, address, freq, level):
    d = DIALECTS[name]
    card = d.event(decode_any(d.card(Card(address, float(freq), level, False, name))))
    assert (card.address, card.service_frequency_s, card.comm_level, card.dialect) == (address, freq, level, name)


@pytest.mark.parametrize("name", list(DIALECTS))
@given(reason=st.sampled_from(["frequency", "no_signal", "silence", "other"]), wait=st.integers(1, 59))
def test_feedback_reads_back(name, reason, wait):
    d = DIALECTS[name]
    assert d.event(decode_any(d.feedback("0247718", Feedback(True)))) == Feedback(True)
    fb = d.event(decode_any(d.feedback("0247718", Feedback(False, reason, wait))))
    assert not fb.ok
    if reason == "frequency":  # the one refusal every dialect states with its wait
        assert (fb.reason, fb.wait_s) == ("frequency", wait)


@pytest.mark.parametrize("name", list(DIALECTS))
@given(powers=st.lists(st.integers(0, 4), min_size=6, max_size=6))
def test_beam_power_reads_back(name, powers):
    d = DIALECTS[name]
    beams = d.event(decode_any(d.beams("0247718", powers)))
    assert isinstance(beams, Beams) and any(beams.powers) == any(powers) and max(beams.powers, default=0) == max(powers)


def test_vendor_bdicp_sentences_give_frequency_and_level():
    # BDS-3 card info as terminals print it: frequency at field 14, level at 15 (0 means level 5)
    card = DIALECTS[TEXT_BDS3].event(decode_text(b"$BDICP,4216930,0,0,3,0,N,2,N,1,0,0,3,1,60,2,0,0,1,1,21,0,0,0*4E"))
    assert (card.address, card.service_frequency_s, card.comm_level) == ("4216930", 60.0, 2)
    card = DIALECTS[TEXT_BDS3].event(decode_text(b"$BDICP,4216930,0*57"))  # a short vendor form: defaults
    assert card.address == "4216930" and card.service_frequency_s == 60.0


def test_binary_feedback_carries_the_wait_and_the_reference_success_frame():
    ok = decode_binary(bytes.fromhex("24 46 4B 58 58 00 10 02 2A C4 00 54 58 53 51 DB"))
    assert DIALECTS["4.0"].event(ok) == Feedback(True)
    early = decode_binary(encode_binary("FKXX", 0x022AC4, {"flag": 4, "extra": bytes([0, 0, 0, 37])}))
    assert early.fields["wait"] == 37
    assert DIALECTS["4.0"].event(early) == Feedback(False, "frequency", 37.0)


def test_bds3_no_time_means_no_beam():
    d = DIALECTS[TEXT_BDS3]
    frame = decode_text(encode_text("BDPWI", {"time": "000000.00", "bds2_count": 0, "bds2": [], "bds3_count": 1,
                                              "bds3": [{"beam": 3, "power": 4}]}))
    assert d.event(frame) == Beams((4,), has_time=False)


def test_the_cli_offers_exactly_the_dialects_there_are():
    from comms.cli import DIALECT_NAMES

    assert set(DIALECT_NAMES) == set(DIALECTS)
