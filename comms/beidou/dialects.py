"""What each terminal dialect says for the few things the link needs, both ways.

The driver and the simulator speak in dialect-free events (`CardInfo`, `Beams`, `Feedback`,
`Message` from the terminal; `CardQuery`, `BeamOutput`, `SendRequest` to it). A `Dialect` maps
them to and from the sentences and frames of protocol.py, so the driver's pacing, retries and
beam tracking are written once. Facts per dialect: ../shared/docs/beidou-rdss.md.

Payloads travel in mixed mode (A4 marker + bytes) on 2.1 and 4.0, and as code (hex digits, no
marker) on BDS-3, so the bytes a message holds depend on the dialect: `Card.payload_bytes`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Protocol

from comms.beidou.protocol import BINARY_40, TEXT_21, TEXT_BDS3, Frame, encode_binary, encode_text

log = logging.getLogger(__name__)

# Bits per BDS-2 message by comm level 1..4 (non-encrypted, encrypted).
CAPACITY_BITS = {False: (110, 408, 628, 848), True: (140, 360, 580, 1680)}
# BDS-3: up to 14,000 bits regionally, 560 globally. The per-level regional table is not in the
# reference, so a BDS-3 card is taken at the global size unless the caller knows better.
BDS3_DEFAULT_BITS = 560
MIXED = 0xA4


# --- events, terminal -> host ------------------------------------------------------------------

@dataclass(frozen=True)
class Card:
    address: str
    service_frequency_s: float
    comm_level: int
    encrypted: bool
    dialect: str = TEXT_21
    bits: int | None = None  # message size when the card says it (else from the level)

    @property
    def capacity_bits(self) -> int:
        if self.bits:
            return self.bits
        if self.dialect == TEXT_BDS3:
            return BDS3_DEFAULT_BITS
        return CAPACITY_BITS[self.encrypted][min(max(self.comm_level, 1), 4) - 1]

    @property
    def payload_bytes(self) -> int:
        """Bytes of our payload per message: mixed mode spends one on the A4 marker."""
        return self.capacity_bits // 8 - (0 if self.dialect == TEXT_BDS3 else 1)


@dataclass(frozen=True)
class Beams:
    powers: tuple[int, ...]
    has_time: bool = True  # BDS-3 terminals report 000000.00 until they have time


@dataclass(frozen=True)
class Feedback:
    ok: bool
    reason: str = ""  # frequency, inhibit, no_signal, low_power, silence, other
    wait_s: float = 0.0


@dataclass(frozen=True)
class Message:
    sender: str
    content: bytes


Event = Card | Beams | Feedback | Message


# --- requests, host -> terminal ----------------------------------------------------------------

@dataclass(frozen=True)
class CardQuery:
    pass


@dataclass(frozen=True)
class BeamOutput:
    on: bool
    interval_s: float = 1.0


@dataclass(frozen=True)
class SendRequest:
    recipient: str
    content: bytes


Request = CardQuery | BeamOutput | SendRequest


def _addr(value: int | str) -> str:
    return f"{int(value):07d}"


def _hhmmss(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%H%M%S")


class Dialect(Protocol):
    """The host's side (driver) and the terminal's side (simulator) of one dialect."""

    name: str

    def card_query(self) -> bytes: ...
    def beam_output(self, on: bool, interval_s: float = 1.0) -> bytes: ...
    def send(self, own: str, to: str, payload: bytes) -> bytes: ...
    def event(self, frame: Frame) -> Event | None:
        """What a terminal's frame means to the driver; None for frames it does not need."""

    def request(self, frame: Frame) -> Request | None:
        """What a host's frame asks of the simulated terminal; None for another dialect's."""

    def card(self, card: Card) -> bytes: ...
    def beams(self, own: str, powers: list[int]) -> bytes: ...
    def feedback(self, own: str, fb: Feedback) -> bytes: ...
    def message(self, own: str, sender: str, content: bytes) -> bytes: ...


class Text21:
    name = TEXT_21
    _INHIBIT: ClassVar[dict[int, str]] = {1: "inhibit", 2: "low_power", 3: "silence"}

    def card_query(self) -> bytes:
        return encode_text("CCICA", {"query_type": 0, "frame_no": 0})

    def beam_output(self, on: bool, interval_s: float = 1.0) -> bytes:
        return encode_text("CCRMO", {"sentence": "BSI", "mode": 2 if on else 1, "interval": interval_s})

    def send(self, own: str, to: str, payload: bytes) -> bytes:
        return encode_text("CCTXA", {"recipient": to, "comm_type": 1, "transfer_type": 2, "content": payload})

    def event(self, frame: Frame) -> Event | None:
        f, kind = frame.fields, frame.type[2:]
        if kind == "BSI":
            return Beams(tuple(f[f"power_{i}"] or 0 for i in range(1, 11)))
        if kind == "FKI" and f.get("command") == "TXA":
            if f["executed"]:
                return Feedback(True)
            if f["inhibit"]:
                return Feedback(False, self._INHIBIT.get(f["inhibit"], "inhibit"))
            # The wait is MMSS to some vendors, seconds to others; read as seconds it is never
            # shorter (0100: 100 s, not 60 s), so a retry is never early.
            return Feedback(False, "frequency" if f["wait"] else "other", float(f["wait"] or 0))
        if kind == "TXR":
            return Message(f["sender"], f["content"])
        if kind == "ICI" and "address" in f:  # (the other ICI form is a host's query)
            return Card(f["address"], float(f["service_frequency_s"]), int(f["comm_level"]), f["encryption"] == "E",
                        self.name)
        return None

    def request(self, frame: Frame) -> Request | None:
        f, kind = frame.fields, frame.type
        if kind == "CCICA" or (kind == "CCICI" and "query_type" in f):  # hosts that query with ICI itself
            return CardQuery()
        if kind == "CCRMO" and f["sentence"] in ("BSI", ""):
            return BeamOutput(f["mode"] in (2, 4), f["interval"] or 1.0)
        if kind == "CCTXA":
            return SendRequest(f["recipient"], f["content"])
        return None

    def card(self, card: Card) -> bytes:
        return encode_text("BDICI", {
            "address": card.address, "serial": "24000000", "broadcast_address": "1933442", "user_type": 6,
            "service_frequency_s": card.service_frequency_s, "comm_level": card.comm_level,
            "encryption": "E" if card.encrypted else "N", "subordinates": 0})

    def beams(self, own: str, powers: list[int]) -> bytes:
        p = (list(powers) + [0] * 10)[:10]
        best = max(range(10), key=lambda i: p[i]) + 1 if any(p) else 0
        return encode_text("BDBSI", {"response_beam": best, "time_diff_beam": best,
                                     **{f"power_{i + 1}": p[i] for i in range(10)}})

    def feedback(self, own: str, fb: Feedback) -> bytes:
        inhibit = {"inhibit": 1, "no_signal": 1, "low_power": 2, "silence": 3}.get(fb.reason, 0)
        return encode_text("BDFKI", {"command": "TXA", "executed": fb.ok, "frequency_flag": True,
                                     "inhibit": inhibit, "wait": min(59, round(fb.wait_s))})

    def message(self, own: str, sender: str, content: bytes) -> bytes:
        return encode_text("BDTXR", {"info_class": 1, "sender": sender, "form": 2, "send_time": "",
                                     "content": content})


class Binary40:
    name = BINARY_40
    # FKXX flags seen in vendor SDKs: 0 success, 1 failure, 2 signal not locked, 3 low power,
    # 4 service frequency not reached (wait in the last byte), 5 crypto error, 6 CRC error,
    # 7 user-level inhibit, 8 inhibit released.
    _FLAGS: ClassVar[dict[int, str]] = {1: "other", 2: "no_signal", 3: "low_power", 4: "frequency", 5: "other",
                                        6: "other", 7: "inhibit"}

    def card_query(self) -> bytes:
        return encode_binary("ICJC", 0, {"frame_no": 0})

    def beam_output(self, on: bool, interval_s: float = 1.0) -> bytes:
        return encode_binary("GLJC", 0, {"output_frequency": max(1, round(interval_s)) if on else 0})

    def send(self, own: str, to: str, payload: bytes) -> bytes:
        content = bytes([MIXED]) + payload
        return encode_binary("TXSQ", int(own), {"info_class": 0x46, "destination": int(to),
                                                "bits": len(content) * 8, "ack": 0, "content": content})

    def event(self, frame: Frame) -> Event | None:
        f, kind = frame.fields, frame.type
        if kind == "GLZK":
            return Beams(tuple(f[f"power_{i}"] or 0 for i in range(1, 7)))
        if kind == "FKXX":
            if f["flag"] == 0:
                return Feedback(True) if f.get("command") == "TXSQ" else None
            if f["flag"] == 8:  # inhibit released: not the answer to a send
                return None
            wait = float(int.from_bytes(f["extra"], "big")) if f["flag"] == 4 else 0.0
            return Feedback(False, self._FLAGS.get(f["flag"], "other"), wait)
        if kind == "TXXX":
            content = f["content"]
            return Message(_addr(f["sender"]), content[1:] if content[:1] == bytes([MIXED]) else content)
        if kind == "ICXX":
            return Card(_addr(f["address"]), float(f["service_frequency_s"]), int(f["comm_level"]),
                        bool(f["encryption"]), self.name)
        return None

    def request(self, frame: Frame) -> Request | None:
        f, kind = frame.fields, frame.type
        if kind == "ICJC":
            return CardQuery()
        if kind == "GLJC":
            return BeamOutput(f["output_frequency"] > 0, float(f["output_frequency"] or 1))
        if kind == "TXSQ":
            content = f["content"]
            return SendRequest(_addr(f["destination"]), content[1:] if content[:1] == bytes([MIXED]) else content)
        return None

    def card(self, card: Card) -> bytes:
        return encode_binary("ICXX", int(card.address), {
            "frame_no": 0, "broadcast_id": 1933442, "user_characteristic": 6,
            "service_frequency_s": round(card.service_frequency_s), "comm_level": card.comm_level,
            "encryption": int(card.encrypted), "subordinates": 0})

    def beams(self, own: str, powers: list[int]) -> bytes:
        p = (list(powers) + [0] * 6)[:6]
        return encode_binary("GLZK", int(own), {f"power_{i + 1}": p[i] for i in range(6)})

    def feedback(self, own: str, fb: Feedback) -> bytes:
        if fb.ok:
            return encode_binary("FKXX", int(own), {"flag": 0, "extra": b"TXSQ"})
        flag = {"frequency": 4, "no_signal": 2, "low_power": 3, "inhibit": 7}.get(fb.reason, 1)
        extra = max(0, round(fb.wait_s)).to_bytes(4, "big") if flag == 4 else b"TXSQ"
        return encode_binary("FKXX", int(own), {"flag": flag, "extra": extra})

    def message(self, own: str, sender: str, content: bytes) -> bytes:
        data = bytes([MIXED]) + content
        now = datetime.now(UTC)
        return encode_binary("TXXX", int(own), {"info_class": 0x60, "sender": int(sender), "hour": now.hour,
                                                "minute": now.minute, "bits": len(data) * 8, "content": data,
                                                "crc_flag": 0})


class Bds3:
    name = TEXT_BDS3
    _REASONS: ClassVar[dict[int, str]] = {1: "frequency", 2: "inhibit", 3: "silence", 4: "no_signal", 5: "other",
                                          6: "other"}
    # Positions in BDICP after the card id, as vendors' firmware reads them
    # ($BDICP,<card>,...,<freq>,<level>,...: frequency at field 14, level at 15, level 0 = 5).
    _ICP_FREQ, _ICP_LEVEL = 12, 13

    def card_query(self) -> bytes:
        return encode_text("CCICR", {"query_type": 0, "frame_no": 0})

    def beam_output(self, on: bool, interval_s: float = 1.0) -> bytes:
        return encode_text("CCRMO", {"sentence": "PWI", "mode": 2 if on else 1, "interval": interval_s})

    def send(self, own: str, to: str, payload: bytes) -> bytes:
        return encode_text("CCTCQ", {"recipient": to, "freq_point": 2, "inbound_ack": 1, "encoding": 2,
                                     "content": payload, "report_freq": 0})

    def event(self, frame: Frame) -> Event | None:
        f, kind = frame.fields, frame.type[2:]
        if kind == "PWI":
            return Beams(tuple(b["power"] or 0 for b in f["bds2"] + f["bds3"]),
                         has_time=f["time"] not in ("", "000000.00"))
        if kind == "FKI" and frame.dialect == TEXT_BDS3 and f["command"] == "TCQ":
            if f["executed"]:
                return Feedback(True)
            return Feedback(False, self._REASONS.get(f["fail_reason"] or 0, "other"), float(f["remaining_s"] or 0))
        if kind == "TCI":
            return Message(f["sender"], f["content"])
        if kind == "ICP":
            return self._card(f)
        return None

    def _card(self, f: dict) -> Card:
        more = f["more"]
        freq, level = 60.0, 3
        try:
            freq = float(more[self._ICP_FREQ])
            level = int(more[self._ICP_LEVEL]) or 5
        except (IndexError, ValueError):
            log.warning("BDICP %s: service frequency and level not where expected; assuming %g s, level %d",
                        more, freq, level)
        return Card(f["card_id"], freq, level, False, self.name)

    def request(self, frame: Frame) -> Request | None:
        f, kind = frame.fields, frame.type
        if kind == "CCICR":
            return CardQuery()
        if kind == "CCRMO" and f["sentence"] in ("PWI", ""):
            return BeamOutput(f["mode"] in (2, 4), f["interval"] or 1.0)
        if kind == "CCTCQ":
            return SendRequest(f["recipient"], f["content"])
        return None

    def card(self, card: Card) -> bytes:
        more = ["0", "0", "3", "0", "N", "2", "N", "1", "0", "0", "3", "1", f"{card.service_frequency_s:g}",
                str(card.comm_level % 5), "0", "0", "1", "1", "21", "0", "0", "0"]
        return encode_text("BDICP", {"card_id": card.address, "more": more})

    def beams(self, own: str, powers: list[int]) -> bytes:
        beams = [{"beam": i + 1, "power": p} for i, p in enumerate(powers) if p]
        return encode_text("BDPWI", {"time": datetime.now(UTC).strftime("%H%M%S.00"), "bds2_count": 0, "bds2": [],
                                     "bds3_count": len(beams), "bds3": beams})

    def feedback(self, own: str, fb: Feedback) -> bytes:
        code = {"frequency": 1, "inhibit": 2, "silence": 3, "no_signal": 4, "low_power": 2}.get(fb.reason, 5)
        return encode_text("BDFKI", {"time": _hhmmss(), "command": "TCQ", "executed": fb.ok,
                                     "fail_reason": 0 if fb.ok else code, "remaining_s": round(fb.wait_s)})

    def message(self, own: str, sender: str, content: bytes) -> bytes:
        return encode_text("BDTCI", {"sender": sender, "recipient": own, "freq_point": 2, "time": _hhmmss(),
                                     "encoding": 2, "unknown": "0", "content": content})


DIALECTS: dict[str, Dialect] = {d.name: d for d in (Text21(), Binary40(), Bds3())}
