"""A streaming reader for a terminal's serial output: text sentences and binary frames mixed,
in arbitrary chunks, with garbage between them. Yields frames or typed errors; never raises."""

from __future__ import annotations

from collections.abc import Iterator

from comms.beidou.protocol import (
    BINARY_HEAD,
    MAX_BINARY,
    MAX_TEXT,
    FormatError,
    Frame,
    LengthError,
    ParseError,
    binary_length,
    decode_binary,
    decode_text,
)


class StreamReader:
    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> Iterator[Frame | ParseError]:
        self.buf += chunk
        while True:
            item = self._next()
            if item is None:
                return
            yield item

    def _next(self) -> Frame | ParseError | None:
        buf = self.buf
        start = buf.find(b"$")
        if start < 0:
            if buf:
                n = len(buf)
                del buf[:]
                return FormatError(f"{n} bytes outside any frame skipped")
            return None
        if start > 0:
            del buf[:start]
            return FormatError(f"{start} bytes outside any frame skipped")
        if len(buf) < 7:
            return None
        length = binary_length(bytes(buf[:7]))
        if length is not None:
            if not BINARY_HEAD.size + 1 <= length <= MAX_BINARY:
                del buf[:1]
                return LengthError(f"binary frame length {length} out of range; resynchronising")
            if len(buf) < length:
                return None
            frame = bytes(buf[:length])
            del buf[:length]
            return self._decode(decode_binary, frame)
        end = buf.find(b"\n", 1)
        nxt = buf.find(b"$", 1)
        if nxt >= 0 and (end < 0 or nxt < end):  # a new frame begins before this line ends
            bad = bytes(buf[:nxt])
            del buf[:nxt]
            return FormatError(f"truncated sentence {bad[:24]!r} skipped")
        if end < 0:
            if len(buf) > MAX_TEXT:
                del buf[:1]
                return LengthError(f"no line end within {MAX_TEXT} bytes; resynchronising")
            return None
        line = bytes(buf[:end + 1])
        del buf[:end + 1]
        return self._decode(decode_text, line)

    @staticmethod
    def _decode(fn, data: bytes) -> Frame | ParseError:
        try:
            return fn(data)
        except ParseError as exc:
            return exc
