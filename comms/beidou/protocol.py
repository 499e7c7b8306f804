"""BeiDou RDSS terminal sentences and frames, as declarative tables with one generic codec.

Three dialects (../shared/docs/beidou-rdss.md): text "2.1" (BDS-2), binary "4.0" (BD1) and
BDS-3 text. Each sentence or frame is a table of typed fields; `decode_text`, `decode_binary`,
`encode_text` and `encode_binary` are the only parsers and writers. Anything malformed raises a
`ParseError` subclass, never another exception.

Numbers decode as numbers; message content as bytes, plus `<name>_text` where it is GB2312 text.

Vendors differ: the same sentence comes with fewer or more trailing fields, and terminals say
things the driver does not need (status, self-check, time, version, receipts). So a sentence with
extra trailing fields decodes and keeps them raw under `extra`; one missing trailing optional
fields decodes with them None; a well-formed sentence of an unknown name decodes as dialect
"unknown" with its fields raw. Only a malformed frame (checksum, framing, a required field missing
or of the wrong type) is an error. Facts per sentence: ../shared/docs/beidou-rdss.md and
docs/beidou-vendors.md.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TEXT_21, BINARY_40, TEXT_BDS3 = "2.1", "4.0", "bds3"
UNKNOWN = "unknown"  # a well-formed text sentence of a name not in the tables
MAX_TEXT = 4096  # a BDS-3 regional message: 14,000 bits as code is 3,500 hex digits
MAX_BINARY = 1024


class ParseError(ValueError):
    """Base of every protocol error; the stream reader yields these instead of raising."""


class ChecksumError(ParseError):
    pass


class LengthError(ParseError):
    pass


class FormatError(ParseError):
    pass


class UnknownSentence(ParseError):
    pass


@dataclass(frozen=True)
class Frame:
    dialect: str
    type: str  # talker + sentence (BDBSI, CCTXA) or binary instruction (TXSQ)
    fields: dict[str, Any]
    raw: bytes = field(repr=False, default=b"")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dialect": self.dialect, "type": self.type}
        for k, v in self.fields.items():
            out[k] = v.hex().upper() if isinstance(v, bytes | bytearray) else v
        return out


# --- text fields -------------------------------------------------------------------------------

@dataclass(frozen=True)
class F:
    """One text field: `kind` is int, float, str, yn (Y/N -> bool) or content (per `form`)."""

    name: str
    kind: str = "str"
    optional: bool = False
    width: int = 0  # zero-padded digits when written (numbers)


@dataclass(frozen=True)
class Group:
    """`count` (a previous int field) repetitions of `fields`, decoded as a list of dicts."""

    name: str
    count: str
    fields: tuple[F, ...]


@dataclass(frozen=True)
class Rest:
    """All remaining fields, kept as strings (vendor-dependent tails)."""

    name: str


@dataclass(frozen=True)
class TextSentence:
    dialect: str
    fields: tuple[F | Group | Rest, ...]
    # content field -> the field that says how it is encoded, and the map code -> encoding
    content_form: tuple[str, str, dict[str, str]] | None = None
    matches: Callable[[list[str]], bool] = lambda parts: True
    required: int | None = None  # leading fields every vendor sends (None: all); the rest may be missing


_FORM_21 = {"0": "gb2312", "1": "code", "2": "mixed"}
_FORM_BDS3 = {"1": "gb2312", "2": "code", "3": "mixed", "4": "compressed", "5": "compressed"}

TEXT: dict[str, tuple[TextSentence, ...]] = {
    "TXA": (TextSentence(TEXT_21, (F("recipient"), F("comm_type", "int"), F("transfer_type", "int"),
                                   F("content", "content")), ("content", "transfer_type", _FORM_21)),),
    "TXR": (TextSentence(TEXT_21, (F("info_class", "int"), F("sender"), F("form", "int"), F("send_time"),
                                   F("content", "content")), ("content", "form", _FORM_21)),),
    "FKI": (
        TextSentence(TEXT_BDS3, (F("time"), F("command"), F("executed", "yn"), F("fail_reason", "int", True),
                                 F("remaining_s", "int", True)), matches=lambda p: bool(re.fullmatch(r"\d{6}", p[0])),
                     required=3),
        TextSentence(TEXT_21, (F("command"), F("executed", "yn"), F("frequency_flag", "yn"), F("inhibit", "int"),
                               F("wait", "int", width=4)), matches=lambda p: bool(re.fullmatch(r"[A-Z]{3}", p[0])),
                     required=2),
    ),
    "BSI": (TextSentence(TEXT_21, (F("response_beam", "int", width=2), F("time_diff_beam", "int", width=2),
                                   *(F(f"power_{i}", "int") for i in range(1, 11))), required=2),),
    "BSS": (TextSentence(TEXT_21, (F("response_beam", "int", True, width=2),
                                   F("time_diff_beam", "int", True, width=2))),),  # empty: no beam chosen yet
    # Receipt (acknowledgement) of messages sent with receipt requested: the peer's address, the
    # number of receipts (0..5), then per receipt the send time and the receipt time, hhmm.
    "HZR": (TextSentence(TEXT_21, (F("address"), F("count", "int"),
                                   Group("receipts", "count", (F("send_time"), F("receipt_time")))), required=2),),
    # Terminal status, vendors' order: PRM (RDSS) module, crypto module, antenna, channel, power
    # source, charging, battery level, remaining operating time. Meanings differ: kept as text.
    "ZTI": (TextSentence(TEXT_21, (F("prm_status"), F("crypto_status"), F("antenna_status"), F("channel_status"),
                                   F("power_source"), F("charging"), F("battery"), F("remaining")), required=1),),
    "ICA": (TextSentence(TEXT_21, (F("query_type", "int"), F("frame_no", "int"))),),
    "ICI": (TextSentence(TEXT_21, (F("address"), F("serial"), F("broadcast_address"), F("user_type", "int"),
                                   F("service_frequency_s", "float"), F("comm_level", "int"), F("encryption"),
                                   F("subordinates", "int")), matches=lambda p: len(p[0]) > 2, required=6),
            # some hosts query with ICI itself, in ICA's fields ($CCICI,0,00): a query (its first
            # field a digit or two, where a card has its address of six or seven)
            TextSentence(TEXT_21, (F("query_type", "int"), F("frame_no", "int")), matches=lambda p: len(p[0]) <= 2,
                         required=1)),
    "RMO": (TextSentence(TEXT_21, (F("sentence"), F("mode", "int"), F("interval", "float", True)), required=2),),
    "WAA": (TextSentence(TEXT_21, (F("report_type", "int"), F("interval", "float", True), F("address"), F("time"),
                                   F("lat"), F("ns"), F("lon"), F("ew"), F("height", "float", True),
                                   F("height_unit"))),),
    "TCQ": (TextSentence(TEXT_BDS3, (F("recipient"), F("freq_point", "int"), F("inbound_ack", "int"),
                                     F("encoding", "int"), F("content", "content"), F("report_freq", "int")),
                         ("content", "encoding", _FORM_BDS3), required=5),),
    "TCI": (TextSentence(TEXT_BDS3, (F("sender"), F("recipient"), F("freq_point", "int"), F("time"),
                                     F("encoding", "int"), F("unknown"), F("content", "content")),
                         ("content", "encoding", _FORM_BDS3)),),
    "PWI": (TextSentence(TEXT_BDS3, (F("time"), F("bds2_count", "int", width=2),
                                     Group("bds2", "bds2_count", (F("beam", "int", width=2), F("power", "int"))),
                                     F("bds3_count", "int", width=2),
                                     Group("bds3", "bds3_count", (F("beam", "int", width=2), F("power", "int")))),
                         required=3),),
    "ICR": (TextSentence(TEXT_BDS3, (F("query_type", "int"), F("frame_no", "int")), required=1),),
    "ICP": (TextSentence(TEXT_BDS3, (F("card_id"), Rest("more"))),),
}


def checksum(body: bytes) -> int:
    x = 0
    for b in body:
        x ^= b
    return x


def _as_gb2312(body: bytes, expected: int) -> bytes:
    """A sentence whose Chinese content came as UTF-8 while its checksum was taken over the GB2312
    bytes (hosts that build the sentence in GB2312, then write it as UTF-8): the GB2312 body when
    that is what the checksum says, else the checksum error."""
    try:
        gb = body.decode("utf-8").encode("gb2312")
    except (UnicodeDecodeError, UnicodeEncodeError):
        gb = None
    if gb is None or gb == body or checksum(gb) != expected:
        raise ChecksumError(f"checksum {expected:02X} does not match the sentence ({checksum(body):02X})")
    return gb


def _content_bytes(text: str, encoding: str) -> bytes:
    """The field as sent -> the message bytes."""
    if encoding == "mixed":
        if not text.upper().startswith("A4"):
            raise FormatError(f"mixed content must start with A4, got {text[:8]!r}")
        text = text[2:]
        # Some terminals switch from hex to plain ASCII within mixed content: the hex pairs, then
        # the rest as the characters themselves.
        hex_len = len(re.match(r"[0-9A-Fa-f]*", text).group())
        if hex_len < len(text):
            hex_len -= hex_len % 2
            return bytes.fromhex(text[:hex_len]) + text[hex_len:].encode("latin-1")
    if encoding in ("code", "mixed"):
        try:
            return bytes.fromhex(text if len(text) % 2 == 0 else text + "0")
        except ValueError:
            raise FormatError(f"content is not hex digits: {text[:16]!r}") from None
    return text.encode("latin-1")  # gb2312 and compressed: raw bytes, recovered from the latin-1 view


def _content_field(data: bytes, encoding: str) -> str:
    if encoding == "mixed":
        return "A4" + data.hex().upper()
    if encoding == "code":
        return data.hex().upper()
    return data.decode("latin-1")


def _convert(f: F, text: str) -> Any:
    if text == "" and (f.optional or f.kind in ("str", "content")):
        return None if f.kind not in ("str", "content") else text
    try:
        if f.kind == "int":
            return int(text)
        if f.kind == "float":
            return float(text)
    except ValueError:
        raise FormatError(f"field {f.name}: {text!r} is not a number") from None
    if f.kind == "yn":
        if text not in ("Y", "N"):
            raise FormatError(f"field {f.name}: expected Y or N, got {text!r}")
        return text == "Y"
    return text


def _render(f: F, value: Any) -> str:
    if value is None:
        return ""
    if f.kind == "yn":
        return "Y" if value else "N"
    if f.kind == "float" and float(value).is_integer():
        return str(int(value))
    if f.kind == "int" and f.width:
        return f"{int(value):0{f.width}d}"
    return str(value)


def decode_text(line: bytes) -> Frame:
    """One text sentence, `$...*hh` with or without CR LF."""
    raw = bytes(line)
    line = raw.rstrip(b"\r\n")
    if len(line) > MAX_TEXT:
        raise LengthError(f"sentence of {len(line)} bytes is longer than {MAX_TEXT}")
    if not line.startswith(b"$"):
        raise FormatError("a sentence starts with $")
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 3:
        raise FormatError("a sentence ends with * and two hex digits")
    body = line[1:star]
    try:
        expected = int(line[star + 1:], 16)
    except ValueError:
        raise ChecksumError(f"checksum {line[star + 1:]!r} is not hex") from None
    if checksum(body) != expected:
        body = _as_gb2312(body, expected)
    parts = body.decode("latin-1").split(",")
    head = parts.pop(0)
    if not re.fullmatch(r"[A-Z]{5}", head):
        raise FormatError(f"sentence name {head!r} is not talker + 3 letters")
    variants = TEXT.get(head[2:])
    if variants is None:  # well-formed, just not ours to interpret: kept raw, never an error
        return Frame(UNKNOWN, head, {"fields": parts}, raw)
    if not parts:
        raise FormatError(f"{head}: no fields")
    spec = next((v for v in variants if v.matches(parts)), None)
    if spec is None:
        raise FormatError(f"{head}: first field {parts[0]!r} fits no known form")
    fields = _decode_fields(head, spec, parts)
    return Frame(spec.dialect, head, fields, raw)


def _decode_fields(head: str, spec: TextSentence, parts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    required = len(spec.fields) if spec.required is None else spec.required
    for n_field, f in enumerate(spec.fields):
        if isinstance(f, Rest):
            out[f.name] = parts[i:]
            i = len(parts)
            continue
        if isinstance(f, Group):
            n = out.get(f.count)
            if n is None and n_field >= required:  # the count itself was missing: none
                out[f.name] = []
                continue
            if not isinstance(n, int) or n < 0 or i + n * len(f.fields) > len(parts):
                raise FormatError(f"{head}: group {f.name} of {n} entries does not fit the sentence")
            out[f.name] = [{g.name: _convert(g, parts[i + k * len(f.fields) + j]) for j, g in enumerate(f.fields)}
                           for k in range(n)]
            i += n * len(f.fields)
            continue
        if i >= len(parts):
            if f.optional or n_field >= required:
                out[f.name] = None
                continue
            raise FormatError(f"{head}: missing field {f.name} (has {len(parts)} fields)")
        if f.kind == "content" and n_field == len(spec.fields) - 1:
            out[f.name] = _convert(f, ",".join(parts[i:]))  # raw GB2312 content may hold commas
            i = len(parts)
            continue
        out[f.name] = _convert(f, parts[i])
        i += 1
    if i < len(parts):
        out["extra"] = parts[i:]  # a vendor's additional trailing fields, kept raw
    if spec.content_form:
        name, form_field, forms = spec.content_form
        encoding = forms.get(str(out.get(form_field)))
        if encoding is None:
            raise FormatError(f"{head}: unknown content form {out.get(form_field)!r}")
        data = _content_bytes(out[name] or "", encoding)
        out[name] = data
        out[f"{name}_encoding"] = encoding
        if encoding in ("gb2312", "mixed", "code"):
            try:
                text = data.decode("gb2312")
                if text.isprintable():
                    out[f"{name}_text"] = text
            except UnicodeDecodeError:
                pass
    return out


def encode_text(talker_sentence: str, fields: dict[str, Any]) -> bytes:
    """Write a sentence from named fields (content as bytes); the inverse of `decode_text`."""
    variants = TEXT.get(talker_sentence[2:])
    if variants is None or len(talker_sentence) != 5:
        raise UnknownSentence(f"unknown sentence {talker_sentence}")
    spec = variants[0] if len(variants) == 1 else next(
        v for v in variants if all(getattr(f, "name", None) in fields for f in v.fields[:2]))
    parts = [talker_sentence]
    form = None
    if spec.content_form:
        form = spec.content_form[2][str(fields[spec.content_form[1]])]
    for f in spec.fields:
        if isinstance(f, Rest):
            parts += [str(v) for v in fields.get(f.name, [])]
        elif isinstance(f, Group):
            for entry in fields.get(f.name, []):
                parts += [_render(g, entry[g.name]) for g in f.fields]
        elif f.kind == "content":
            value = fields[f.name]
            parts.append(_content_field(value if isinstance(value, bytes) else str(value).encode("gb2312"), form))
        else:
            parts.append(_render(f, fields.get(f.name)))
    parts += [str(v) for v in fields.get("extra") or []]
    body = ",".join(parts).encode("latin-1")
    return b"$" + body + b"*" + f"{checksum(body):02X}".encode() + b"\r\n"


# --- binary frames -----------------------------------------------------------------------------

@dataclass(frozen=True)
class B:
    """One binary field: `size` bytes unsigned big-endian, `bytes` of `size`, or content."""

    name: str
    size: int = 1
    kind: str = "uint"  # uint, bytes, content (length from `bits`), rest (every byte left)
    optional: bool = False  # some vendors' frames end before it: decoded as None


BINARY: dict[str, tuple[B, ...]] = {
    "TXSQ": (B("info_class"), B("destination", 3), B("bits", 2), B("ack"), B("content", kind="content")),
    "TXXX": (B("info_class"), B("sender", 3), B("hour"), B("minute"), B("bits", 2), B("content", kind="content"),
             B("crc_flag", optional=True)),
    "FKXX": (B("flag"), B("extra", 4, "bytes", optional=True)),
    "GLJC": (B("output_frequency"),),
    "GLZK": tuple(B(f"power_{i}", optional=i > 1) for i in range(1, 7)),
    "ICJC": (B("frame_no"),),
    "ICXX": (B("frame_no"), B("broadcast_id", 3), B("user_characteristic"), B("service_frequency_s", 2),
             B("comm_level"), B("encryption", optional=True), B("subordinates", 2, optional=True)),
    # self-check request (output every `frequency` s, 0 = once) and its answer: IC card state,
    # hardware state, battery level, inbound (transmit) state, then the power of six beams
    "XTZJ": (B("frequency", 2),),
    "ZJXX": (B("ic_state"), B("hardware_state"), B("battery"), B("inbound_state"),
             *(B(f"power_{i}", optional=True) for i in range(1, 7))),
    # receipt (acknowledgement) of messages sent with one requested: the peer, the number of
    # receipts, then per receipt send hour, minute and receipt hour, minute
    "TXHZ": (B("peer", 3), B("count"), B("receipts", kind="rest")),
    # time output request and answer (the terminal's UTC time)
    "SJSC": (B("frequency", 2),),
    "SJXX": (B("year", 2), B("month"), B("day"), B("hour"), B("minute"), B("second")),
    # version read and answer (ASCII text, vendor-defined)
    "BBDQ": (),
    "BBXX": (B("version", kind="rest"),),
}
BINARY_HEAD = struct.Struct(">5sH3s")  # $ + instruction, total length, user address


def binary_length(head: bytes) -> int | None:
    """Total length from the first 7 bytes of a binary frame, or None if they are no such head."""
    if len(head) < 7 or head[:1] != b"$" or head[1:5].decode("latin-1") not in BINARY:
        return None
    return int.from_bytes(head[5:7], "big")


def decode_binary(frame: bytes) -> Frame:
    frame = bytes(frame)
    if len(frame) < BINARY_HEAD.size + 1:
        raise LengthError(f"binary frame of {len(frame)} bytes is shorter than its head")
    tag, length, addr = BINARY_HEAD.unpack_from(frame)
    name = tag[1:].decode("latin-1")
    if tag[:1] != b"$":
        raise FormatError("a binary frame starts with $")
    spec = BINARY.get(name)
    if spec is None:
        raise UnknownSentence(f"unknown binary instruction {name!r}")
    if length != len(frame):
        raise LengthError(f"{name}: length field says {length} bytes, frame has {len(frame)}")
    if checksum(frame[:-1]) != frame[-1]:
        raise ChecksumError(f"{name}: checksum {frame[-1]:02X} does not match ({checksum(frame[:-1]):02X})")
    info, at = frame[BINARY_HEAD.size:-1], 0
    out: dict[str, Any] = {"address": int.from_bytes(addr, "big")}
    for f in spec:
        if f.kind == "content":
            bits = out.get("bits", 0)
            n = (bits + 7) // 8
            tail = sum(g.size for g in spec[spec.index(f) + 1:] if not g.optional)
            if at + n + tail > len(info):
                raise LengthError(f"{name}: {bits} content bits do not fit the {len(info)}-byte information field")
            data = info[at:at + n]
            out[f.name] = data
            if data[:1] == b"\xa4":
                out[f"{f.name}_encoding"] = "mixed"
            at += n
            continue
        if f.kind == "rest":
            out[f.name] = info[at:]
            at = len(info)
            continue
        if at + f.size > len(info):
            if f.optional:
                out[f.name] = None
                continue
            raise LengthError(f"{name}: information ends before field {f.name}")
        chunk = info[at:at + f.size]
        out[f.name] = int.from_bytes(chunk, "big") if f.kind == "uint" else chunk
        at += f.size
    if at != len(info):
        out["tail"] = info[at:]  # a vendor's additional trailing bytes, kept raw
    if name == "FKXX" and out["extra"] is not None:
        if out["flag"] == 4:  # service frequency not reached: the extra bytes hold the wait in seconds
            out["wait"] = int.from_bytes(out["extra"], "big")
        elif out["extra"].isascii() and out["extra"].isalpha():
            out["command"] = out["extra"].decode("ascii")
    if name == "TXHZ":
        data = out["receipts"]
        if len(data) < 4 * out["count"]:
            raise LengthError(f"TXHZ: {out['count']} receipts do not fit {len(data)} bytes")
        out["receipts"] = [{"send_time": f"{data[4 * k]:02d}{data[4 * k + 1]:02d}",
                            "receipt_time": f"{data[4 * k + 2]:02d}{data[4 * k + 3]:02d}"} for k in range(out["count"])]
        if len(data) > 4 * out["count"]:
            out["tail"] = data[4 * out["count"]:]
    if name == "BBXX":
        out["version_text"] = out["version"].decode("latin-1").strip("\x00 ")
    return Frame(BINARY_40, name, out, frame)


def encode_binary(name: str, address: int, fields: dict[str, Any]) -> bytes:
    spec = BINARY.get(name)
    if spec is None:
        raise UnknownSentence(f"unknown binary instruction {name!r}")
    info = b""
    for f in spec:
        value = fields.get(f.name)
        if value is None and f.optional:
            break  # a shorter vendor's frame: what follows is missing too
        if f.name == "receipts" and name == "TXHZ":
            value = b"".join(bytes([int(r["send_time"][:2]), int(r["send_time"][2:]), int(r["receipt_time"][:2]),
                                    int(r["receipt_time"][2:])]) for r in value)
        if f.kind in ("content", "bytes", "rest"):
            info += bytes(value)
        else:
            info += int(value).to_bytes(f.size, "big")
    info += bytes(fields.get("tail") or b"")
    length = BINARY_HEAD.size + len(info) + 1
    head = BINARY_HEAD.pack(b"$" + name.encode(), length, address.to_bytes(3, "big"))
    body = head + info
    return body + bytes([checksum(body)])


def content_bits(data: bytes, encoding: str) -> int:
    """Bit length the binary dialect declares: Chinese bytes x 8, code digits x 4, mixed incl. A4."""
    return len(data) * 8 if encoding != "code" else len(data.hex()) * 4


def decode_any(data: bytes) -> Frame:
    """A binary frame when it starts like one, else a text sentence."""
    return decode_binary(data) if binary_length(bytes(data[:7])) is not None else decode_text(data)
