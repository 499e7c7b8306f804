"""BeiDou RDSS codecs: the reference's examples, round trips, typed errors on any input, streaming."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms.beidou.protocol import (
    BINARY_40,
    TEXT_21,
    ChecksumError,
    Frame,
    LengthError,
    ParseError,
    UnknownSentence,
    content_bits,
    decode_any,
    decode_binary,
    decode_text,
    encode_binary,
    encode_text,
)
from comms.beidou.stream import StreamReader

EXAMPLES = {
    "$CCTXA,0247718,1,1,3132333435*70": {"type": "CCTXA", "recipient": "0247718", "content": b"12345"},
    "$BDTXR,1,0179773,2,,A468656C6C6F*43": {"type": "BDTXR", "sender": "0179773", "content": b"hello",
                                            "content_text": "hello"},
    "$BDFKI,TXA,Y,Y,0,0040*17": {"command": "TXA", "executed": True, "inhibit": 0, "wait": 40},
    "$BDFKI,TXA,N,Y,0,0000*04": {"command": "TXA", "executed": False, "wait": 0},
    "$BDBSI,01,03,3,2,2,0,3,0,0,3,0,0*5F": {"response_beam": 1, "power_1": 3, "power_5": 3, "power_10": 0},
    "$BDICI,0241636,24000000,1933442,6,60,3,N,0*30": {"address": "0241636", "service_frequency_s": 60.0,
                                                      "comm_level": 3},
}


@pytest.mark.parametrize("sentence", list(EXAMPLES))
def test_reference_examples_decode_and_re_encode(sentence):
    frame = decode_text(sentence.encode())
    assert frame.dialect == TEXT_21
    for key, value in EXAMPLES[sentence].items():
        assert (frame.type if key == "type" else frame.fields[key]) == value
    assert encode_text(frame.type, frame.fields) == sentence.encode() + b"\r\n"


def test_reference_binary_examples():
    q = decode_binary(bytes.fromhex("24 49 43 4A 43 00 0C 00 00 00 00 2B"))
    assert (q.dialect, q.type, q.fields["frame_no"]) == (BINARY_40, "ICJC", 0)
    fk = decode_binary(bytes.fromhex("24 46 4B 58 58 00 10 02 2A C4 00 54 58 53 51 DB"))
    assert fk.type == "FKXX" and fk.fields["flag"] == 0 and fk.fields["command"] == "TXSQ"
    assert fk.fields["address"] == 0x022AC4


def test_bds3_and_2_1_feedback_are_told_apart():
    bds3 = encode_text("BDFKI", {"time": "093015", "command": "TCQ", "executed": False, "fail_reason": 1,
                                 "remaining_s": 42})
    frame = decode_text(bds3)
    assert frame.dialect == "bds3" and frame.fields["remaining_s"] == 42
    assert decode_text(b"$BDFKI,TXA,Y,Y,0,0040*17").dialect == TEXT_21


def test_typed_errors():
    with pytest.raises(ChecksumError):
        decode_text(b"$BDBSI,01,03,3,2,2,0,3,0,0,3,0,0*5E")
    with pytest.raises(ChecksumError):
        decode_text(b"$bdbsi,01*zz")
    good = bytes.fromhex("24 46 4B 58 58 00 10 02 2A C4 00 54 58 53 51 DB")
    with pytest.raises(LengthError):
        decode_binary(good[:-3])
    with pytest.raises(ChecksumError):
        decode_binary(good[:-1] + b"\x00")
    body = b"BDXYZ,1"  # well-formed, of no known name: kept raw, not an error
    frame = decode_text(b"$" + body + b"*%02X" % _xor(body))
    assert (frame.dialect, frame.type, frame.fields) == ("unknown", "BDXYZ", {"fields": ["1"]})
    with pytest.raises(UnknownSentence):  # a binary instruction of no known name cannot be framed
        encode_binary("XXXX", 0, {})


def _xor(data: bytes) -> int:
    x = 0
    for b in data:
        x ^= b
    return x


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["0", "1", "2"]), st.binary(min_size=1, max_size=60), st.integers(0, 1))
def test_text_message_round_trip(form, content, comm_type):
    if form == "0":  # GB2312 text: two bytes of 0xA1..0xFE per character
        content = bytes(0xA1 + b % 0x5E for b in content)[: len(content) // 2 * 2] or b"\xb0\xa1"
    sentence = encode_text("CCTXA", {"recipient": "0247718", "comm_type": comm_type, "transfer_type": int(form),
                                     "content": content})
    frame = decode_text(sentence)
    assert frame.fields["content"] == content and frame.fields["comm_type"] == comm_type


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFFFF), st.binary(min_size=1, max_size=90), st.integers(0, 0xFFFFFF))
def test_binary_send_round_trip(address, payload, dest):
    content = b"\xa4" + payload
    frame = encode_binary("TXSQ", address, {"info_class": 0x46, "destination": dest,
                                            "bits": content_bits(content, "mixed"), "ack": 0, "content": content})
    back = decode_any(frame)
    assert back.type == "TXSQ" and back.fields["content"] == content and back.fields["destination"] == dest
    assert back.fields["address"] == address


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_raise_only_parse_errors(blob):
    for fn in (decode_text, decode_binary, decode_any):
        with contextlib.suppress(ParseError):
            assert isinstance(fn(blob), Frame)


def _frames() -> list[bytes]:
    return [s.encode() + b"\r\n" for s in EXAMPLES] + [
        bytes.fromhex("24 49 43 4A 43 00 0C 00 00 00 00 2B"),
        bytes.fromhex("24 46 4B 58 58 00 10 02 2A C4 00 54 58 53 51 DB"),
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_frames()), min_size=1, max_size=12), st.data())
def test_stream_reader_finds_every_frame_in_any_chunking_with_garbage(frames, data):
    stream = b""
    for f in frames:
        stream += data.draw(st.binary(max_size=8).map(lambda g: g.replace(b"$", b"#"))) + f
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = StreamReader()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += list(reader.feed(stream[a:b]))
    got = [x.raw for x in out if isinstance(x, Frame)]
    assert got == frames
    assert all(isinstance(x, Frame | ParseError) for x in out)


def test_ten_megabytes_of_random_bytes_give_typed_errors_only():
    rng = random.Random(7)
    reader = StreamReader()
    kinds = set()
    for _ in range(10 * 256):  # 10 MB in 4 kB reads, as from a serial port
        for item in reader.feed(rng.randbytes(4096)):
            assert isinstance(item, Frame | ParseError)
            kinds.add(type(item).__name__)
    assert "FormatError" in kinds


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pli", "beidou", "parse", *args], input=stdin,
                          capture_output=True, text=True, env=os.environ)


def test_cli_parse_text_hex_and_stdin():
    ok = _cli("$BDBSI,01,03,3,2,2,0,3,0,0,3,0,0*5F")
    assert ok.returncode == 0
    doc = json.loads(ok.stdout)
    assert doc["dialect"] == "2.1" and doc["type"] == "BDBSI" and doc["power_1"] == 3
    binary = json.loads(_cli("--hex", "24 46 4B 58 58 00 10 02 2A C4 00 54 58 53 51 DB").stdout)
    assert binary["type"] == "FKXX" and binary["dialect"] == "4.0"
    bad = _cli("$BDBSI,01,03,3,2,2,0,3,0,0,3,0,0*5E")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "checksum" in bad.stderr
    lines = _cli("-", stdin="$BDFKI,TXA,Y,Y,0,0040*17\nhex:24 49 43 4A 43 00 0C 00 00 00 00 2B\nnonsense\n")
    docs = [json.loads(x) for x in lines.stdout.splitlines()]
    assert lines.returncode == 2 and [d.get("type") for d in docs[:2]] == ["BDFKI", "ICJC"]
    assert "error" in docs[2]


def test_a_full_size_bds3_regional_message_decodes():
    from comms.beidou.protocol import decode_text, encode_text

    content = bytes(range(256)) * 6 + bytes(214)  # 1,750 bytes: 14,000 bits
    line = encode_text("BDTCI", {"sender": "0247718", "recipient": "0179773", "freq_point": 2, "time": "101500",
                                 "encoding": 2, "unknown": "0", "content": content})
    assert len(line) > 3500
    assert decode_text(line).fields["content"] == content
