"""Vendor tolerance: sentences with more or fewer trailing fields, status, self-check, time, version
and receipt sentences of the three dialects, and the driver going on past what it does not need."""

from __future__ import annotations

import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from waiting import until

from comms.beidou.protocol import (
    BINARY,
    TEXT,
    ChecksumError,
    F,
    Group,
    LengthError,
    ParseError,
    Rest,
    TextSentence,
    checksum,
    decode_any,
    decode_binary,
    decode_text,
    encode_binary,
    encode_text,
)

TALKER = {"TXA": "CC", "TCQ": "CC", "ICA": "CC", "ICR": "CC", "RMO": "CC", "BSS": "CC"}
_TOKEN = st.from_regex(r"[0-9A-Z.]{0,8}", fullmatch=True)


def _value(f: F):
    if f.name == "time":
        return st.from_regex(r"[0-2][0-9][0-5][0-9][0-5][0-9]", fullmatch=True)
    if f.name == "address":  # a card's address: six or seven digits
        return st.from_regex(r"[0-9]{6,7}", fullmatch=True)
    if f.name in ("command", "sentence"):
        return st.from_regex(r"[A-Z]{3}", fullmatch=True)
    return {"int": st.integers(0, 99), "float": st.integers(0, 999).map(float), "yn": st.booleans()}.get(f.kind, _TOKEN)


@st.composite
def sentences(draw, name: str, variant: int = 0):
    """Named fields for one variant of sentence `name`, every field present."""
    spec: TextSentence = TEXT[name][variant]
    out: dict = {}
    for f in spec.fields:
        if isinstance(f, Rest):
            out[f.name] = draw(st.lists(_TOKEN, max_size=4))
        elif isinstance(f, Group):
            out[f.name] = [{g.name: draw(_value(g)) for g in f.fields} for _ in range(out[f.count])]
        elif f.kind == "content":
            code = next(c for c, enc in spec.content_form[2].items() if enc in ("code", "mixed"))
            out[spec.content_form[1]] = int(code)
            out[f.name] = draw(st.binary(max_size=20))
        elif f.name.endswith("count"):
            out[f.name] = draw(st.integers(0, 3))
        elif spec.content_form and f.name == spec.content_form[1]:
            continue  # set with its content
        else:
            out[f.name] = draw(_value(f))
    return out


NAMES = [(n, v) for n, variants in TEXT.items() for v in range(len(variants))]


def _sentence(name: str, variant: int, fields: dict) -> bytes:
    talker = TALKER.get(name, "BD")
    return encode_text(talker + name, fields) if variant == 0 else _encode_variant(talker + name, variant, fields)


def _encode_variant(head: str, variant: int, fields: dict) -> bytes:
    frame = encode_text(head, fields)
    assert decode_text(frame).dialect == TEXT[head[2:]][variant].dialect
    return frame


def _binary(name: str, info: bytes) -> bytes:
    """A 4.0 frame around `info`, with the right length and checksum."""
    body = b"$" + name.encode() + (10 + len(info) + 1).to_bytes(2, "big") + b"\x00\x00\x01" + info
    x = 0
    for b in body:
        x ^= b
    return body + bytes([x])


def _strip(sentence: bytes, drop: int = 0, add: list[str] | None = None) -> bytes:
    """The same sentence with `drop` trailing fields removed and `add` appended, checksum redone."""
    body = sentence[1:sentence.rindex(b"*")].decode("latin-1").split(",")
    body = body[:len(body) - drop] + (add or [])
    data = ",".join(body).encode("latin-1")
    x = 0
    for b in data:
        x ^= b
    return b"$" + data + b"*%02X\r\n" % x


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(NAMES), st.data())
def test_every_sentence_round_trips(name_variant, data):
    name, variant = name_variant
    fields = data.draw(sentences(name, variant))
    frame = decode_text(_sentence(name, variant, fields))
    assert frame.type[2:] == name and "extra" not in frame.fields
    for key, value in fields.items():
        if not isinstance(value, bytes | list):
            assert frame.fields[key] == value, key


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([nv for nv in NAMES if TEXT[nv[0]][nv[1]].fields[-1].__class__ is F
                        and TEXT[nv[0]][nv[1]].fields[-1].kind != "content"]),
       st.lists(st.from_regex(r"[0-9A-Za-z.-]{0,6}", fullmatch=True), min_size=1, max_size=4), st.data())
def test_extra_trailing_fields_are_kept_raw_and_the_rest_decodes(name_variant, extra, data):
    name, variant = name_variant
    fields = data.draw(sentences(name, variant))
    plain = decode_text(_sentence(name, variant, fields))
    more = decode_text(_strip(_sentence(name, variant, fields), add=extra))
    assert more.fields["extra"] == extra
    assert {k: v for k, v in more.fields.items() if k != "extra"} == plain.fields


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([nv for nv in NAMES if TEXT[nv[0]][nv[1]].required is not None
                        and not any(isinstance(f, Group) for f in TEXT[nv[0]][nv[1]].fields)]), st.data())
def test_missing_trailing_optional_fields_decode_empty(name_variant, data):
    name, variant = name_variant
    spec = TEXT[name][variant]
    fields = data.draw(sentences(name, variant))
    drop = data.draw(st.integers(1, len(spec.fields) - spec.required))
    frame = decode_text(_strip(_sentence(name, variant, fields), drop=drop))
    for f in spec.fields[len(spec.fields) - drop:]:
        assert frame.fields[f.name] is None
    for f in spec.fields[:spec.required]:
        assert frame.fields[f.name] == fields[f.name]


def test_a_missing_required_field_is_still_an_error():
    with pytest.raises(ParseError, match="missing field"):
        decode_text(_strip(encode_text("BDICI", {"address": "0241636", "serial": "1", "broadcast_address": "2",
                                                 "user_type": 6, "service_frequency_s": 60, "comm_level": 3,
                                                 "encryption": "N", "subordinates": 0}), drop=4))


def test_real_vendor_variants_decode():
    # 2.1 feedback without the wait (terminals that omit it on success), 6-beam BSI of older units
    fki = decode_text(_strip(b"$BDFKI,TXA,Y,Y,0,0040*17\r\n", drop=1))
    assert fki.fields["executed"] and fki.fields["wait"] is None
    bsi = decode_text(_strip(b"$BDBSI,01,03,3,2,2,0,3,0,0,3,0,0*5F\r\n", drop=4))
    assert [bsi.fields[f"power_{i}"] for i in range(1, 11)] == [3, 2, 2, 0, 3, 0, None, None, None, None]
    # a BDS-3 feedback with a vendor's extra status field
    bds3 = decode_text(_strip(encode_text("BDFKI", {"time": "093015", "command": "TCQ", "executed": True,
                                                    "fail_reason": 0, "remaining_s": 0}), add=["A"]))
    assert bds3.dialect == "bds3" and bds3.fields["extra"] == ["A"]


def test_status_and_receipt_sentences_of_the_text_dialect():
    zti = decode_text(_strip(encode_text("BDZTI", {"prm_status": "0", "crypto_status": "0", "antenna_status": "0",
                                                   "channel_status": "0", "power_source": "1", "charging": "0",
                                                   "battery": "86", "remaining": "12"})))
    assert zti.dialect == "2.1" and zti.fields["battery"] == "86"
    hzr = decode_text(encode_text("BDHZR", {"address": "0179773", "count": 2, "receipts": [
        {"send_time": "0930", "receipt_time": "0931"}, {"send_time": "0932", "receipt_time": "0934"}]}))
    assert hzr.fields["receipts"][1] == {"send_time": "0932", "receipt_time": "0934"}
    with pytest.raises(ParseError):  # says 3 receipts, carries 2: malformed
        decode_text(_strip(encode_text("BDHZR", {"address": "1", "count": 2, "receipts": [
            {"send_time": "0930", "receipt_time": "0931"}] * 2}), add=[]).replace(b",2,", b",3,"))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 0xFFFFFF), st.lists(st.integers(0, 255), min_size=10, max_size=10))
def test_self_check_frame_round_trips(address, values):
    names = [f.name for f in BINARY["ZJXX"]]
    frame = decode_binary(encode_binary("ZJXX", address, dict(zip(names, values, strict=True))))
    assert [frame.fields[n] for n in names] == values and frame.fields["address"] == address


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 23), st.integers(0, 59)] * 2), max_size=5), st.binary(max_size=3))
def test_receipt_frame_round_trips_and_keeps_a_tail(receipts, tail):
    rs = [{"send_time": f"{a:02d}{b:02d}", "receipt_time": f"{c:02d}{d:02d}"} for a, b, c, d in receipts]
    frame = decode_binary(encode_binary("TXHZ", 247718, {"peer": 179773, "count": len(rs), "receipts": rs,
                                                         "tail": tail}))
    assert frame.fields["receipts"] == rs and frame.fields.get("tail", b"") == tail


def test_time_version_and_requests_of_the_binary_dialect():
    sj = decode_binary(encode_binary("SJXX", 1, {"year": 2026, "month": 12, "day": 1, "hour": 11, "minute": 5,
                                                 "second": 9}))
    assert (sj.fields["year"], sj.fields["second"]) == (2026, 9)
    bb = decode_binary(encode_binary("BBXX", 1, {"version": b"BD-40 V2.3\x00"}))
    assert bb.fields["version_text"] == "BD-40 V2.3"
    assert decode_binary(encode_binary("BBDQ", 0, {})).type == "BBDQ"
    assert decode_binary(encode_binary("XTZJ", 0, {"frequency": 10})).fields["frequency"] == 10


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(BINARY)), st.binary(min_size=1, max_size=6))
def test_binary_frames_with_extra_trailing_bytes_keep_them(name, tail):
    spec = BINARY[name]
    fields: dict = {}
    for f in spec:
        if f.kind == "content":
            fields[f.name], fields["bits"] = b"\xa4ab", 24
        elif f.kind in ("bytes", "rest"):
            fields[f.name] = b"TXSQ" if f.size == 4 else b""
        elif f.name == "count":
            fields[f.name] = 0
        elif f.name != "bits":
            fields[f.name] = 1
    if name in ("TXSQ", "TXXX", "TXHZ", "BBXX"):  # content or a rest field takes every byte: no tail
        tail = b""
    frame = decode_binary(encode_binary(name, 5, {**fields, "tail": tail}))
    assert frame.fields.get("tail", b"") == tail


def test_binary_frames_missing_trailing_optional_fields_decode_empty():
    icxx = encode_binary("ICXX", 247718, {"frame_no": 0, "broadcast_id": 1, "user_characteristic": 6,
                                          "service_frequency_s": 60, "comm_level": 3})
    frame = decode_binary(icxx)
    assert frame.fields["service_frequency_s"] == 60 and frame.fields["subordinates"] is None
    short = encode_binary("GLZK", 1, {"power_1": 3, "power_2": 2})
    assert decode_binary(short).fields["power_3"] is None
    with pytest.raises(LengthError):  # the service frequency itself missing: malformed
        decode_binary(_binary("ICXX", icxx[10:15]))


@pytest.mark.parametrize("dialect", ["2.1", "4.0", "bds3"])
def test_the_driver_goes_on_past_status_self_check_and_unknown_sentences(dialect):
    from comms.beidou.driver import Driver
    from comms.beidou.sim import Network, SimTerminal, TerminalConfig

    net = Network()
    sims = [SimTerminal(TerminalConfig(address=a, dialect=dialect, service_frequency_s=0.2, delay_s=0.05,
                                       bsi_interval_s=0.1), net).start() for a in ("0247718", "0179773")]
    noise = [_strip(encode_text("BDZTI", {"prm_status": "0"}), drop=7), _strip(b"$BDXYZ,1,2*00"),
        encode_binary("ZJXX", 247718, {"ic_state": 0, "hardware_state": 0, "battery": 90, "inbound_state": 0}),
        encode_binary("SJXX", 247718, {"year": 2026, "month": 12, "day": 1, "hour": 1, "minute": 2, "second": 3})]
    assert all(decode_any(n) for n in noise)
    drivers = []
    try:
        for n in noise:
            sims[0]._write(n)  # said before the driver opens the port: dropped, as by a real UART
        drivers = [Driver(sim.device) for sim in sims]
        drone, ground = drivers
        assert drone.card.dialect == dialect
        for n in noise * 2:
            sims[0]._write(n)
        assert until(drone.beam_ok, 3)
        assert drone.send("0179773", b"still here").ok
        assert ground.receive(timeout=3) == ("0247718", b"still here")
        time.sleep(0.2)
        assert drone.failed is None
    finally:
        for d in drivers:
            d.close()
        for sim in sims:
            sim.stop()


def _line(body: bytes) -> bytes:
    return b"$" + body + b"*%02X\r\n" % checksum(body)


def test_the_vendor_families_that_were_refused():
    # a host's card query in ICI's own name, with ICA's two fields
    assert decode_text(b"$CCICI,0,00*73").fields == {"query_type": 0, "frame_no": 0}
    # empty fields where a number is optional: no beam chosen yet
    assert decode_text(b"$CCBSS,,*42").fields == {"response_beam": None, "time_diff_beam": None}
    # Chinese content written as UTF-8, its checksum over the GB2312 bytes
    text = "CCTXA,0241636,1,0,巡检一号"
    utf8_line = b"$" + text.encode("utf-8") + b"*%02X" % checksum(text.encode("gb2312"))
    txa = decode_text(utf8_line)
    assert txa.fields["content_text"] == "巡检一号" and txa.fields["content"] == "巡检一号".encode("gb2312")
    with pytest.raises(ChecksumError):  # a checksum neither encoding gives is still an error
        decode_text(utf8_line[:-2] + b"00")
    # mixed content switching from hex to ASCII
    txr = decode_text(_line(b"BDTXR,1,0241636,2,,A4D1B2BCECTOWER 17"))
    assert txr.fields["content_text"] == "巡检TOWER 17"


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=20)
       .filter(lambda t: _gb2312_ok(t)))
def test_gb2312_checksummed_utf8_content_decodes(text):
    body = f"CCTXA,0241636,1,0,{text}"
    # (where the XOR of the UTF-8 bytes happens to give the same checksum, the sentence is taken as
    # sent: nothing tells the two apart)
    assume(checksum(body.encode("utf-8")) != checksum(body.encode("gb2312")))
    line = b"$" + body.encode("utf-8") + b"*%02X" % checksum(body.encode("gb2312"))
    assert decode_text(line).fields["content_text"] == text


def _gb2312_ok(text: str) -> bool:
    try:
        text.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


NOT_HEX_START = st.from_regex(r"[ -+\-~]{1,20}", fullmatch=True).filter(lambda t: t[0] not in "0123456789ABCDEFabcdef")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=20), NOT_HEX_START)
def test_mixed_content_of_hex_then_ascii_decodes(data, ascii_tail):
    frame = decode_text(_line(b"BDTXR,1,0241636,2,,A4" + data.hex().upper().encode() + ascii_tail.encode()))
    assert frame.fields["content"] == data + ascii_tail.encode()


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["", "0", "12"]), st.sampled_from(["", "3", "07"]))
def test_bss_numbers_may_be_empty(a, b):
    f = decode_text(_line(f"CCBSS,{a},{b}".encode())).fields
    assert f["response_beam"] == (int(a) if a else None) and f["time_diff_beam"] == (int(b) if b else None)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 9), st.integers(0, 99))
def test_an_ici_query_is_a_card_query_for_the_terminal(query, frame_no):
    from comms.beidou.dialects import DIALECTS, CardQuery

    frame = decode_text(_line(f"CCICI,{query},{frame_no:02d}".encode()))
    assert frame.fields == {"query_type": query, "frame_no": frame_no}
    assert isinstance(DIALECTS["2.1"].request(frame), CardQuery) and DIALECTS["2.1"].event(frame) is None


def test_a_tcq_longer_than_the_cards_class_is_refused_by_the_terminal_with_a_reason():
    """A host that sends more than the card's class allows gets the terminal's refusal (FKI, not
    executed), as a real terminal answers, and nothing is delivered."""
    import serial

    from comms.beidou.dialects import DIALECTS, Card, Feedback
    from comms.beidou.sim import Network, SimTerminal, TerminalConfig
    from comms.beidou.stream import StreamReader

    net = Network()
    sim = SimTerminal(TerminalConfig(address="0247718", dialect="bds3", service_frequency_s=0.1), net).start()
    peer = SimTerminal(TerminalConfig(address="0179773", dialect="bds3"), net).start()
    try:
        limit = Card("0247718", 0.1, 3, False, "bds3").payload_bytes
        port = serial.Serial(sim.device, timeout=0.2)
        port.write(DIALECTS["bds3"].send("0247718", "0179773", b"x" * (limit + 1)))
        reader, answer, deadline = StreamReader(), None, time.monotonic() + 5
        while answer is None and time.monotonic() < deadline:
            for frame in reader.feed(port.read(4096)):
                event = DIALECTS["bds3"].event(frame) if not isinstance(frame, Exception) else None
                if isinstance(event, Feedback):
                    answer = event
        port.close()
        assert answer is not None and not answer.ok
        assert sim.refused == 1 and sim.sent == 0
    finally:
        sim.stop()
        peer.stop()
