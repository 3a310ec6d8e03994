"""The one decoding path for text files: encodings, byte-order marks, line endings, NUL and bad bytes refused."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

from headcls.errors import HeadclsError

# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


# Python's incremental UTF-16/32 decoders refuse a stream without a BOM; such files are little-endian in practice.
NO_BOM = {"utf-16": "utf-16-le", "utf-32": "utf-32-le"}


class TextReader(io.TextIOBase):
    """The one way headcls reads text files: bytes decoded with `encoding` (a BOM overrides it and is dropped),
    every line ending (\\r\\n, \\r, \\n) read as \\n, and a NUL character or an undecodable byte refused with its
    position. Streams: memory stays bounded whatever the file size.
    """

    CHUNK = 1 << 16

    def __init__(self, path: str | Path, encoding: str = "utf-8"):
        self.path = Path(path)
        self.raw = self.path.open("rb")
        head = self.raw.read(4)
        bom = next(((mark, name) for mark, name in BOMS if head.startswith(mark)), None)
        if bom:
            self.codec = bom[1]
            head = head[len(bom[0]) :]
            self.offset = len(bom[0])
        else:
            name = codecs.lookup(encoding).name
            self.codec = NO_BOM.get(name, name)
            self.offset = 0
        self.named = encoding
        self.inner = codecs.getincrementaldecoder(self.codec)(errors="strict")
        self.decoder = io.IncrementalNewlineDecoder(self.inner, translate=True)
        self.buffer = ""
        self.chars = 0  # characters decoded so far, for the position of a NUL
        self.done = False
        self._feed(head, final=False)

    def _feed(self, data: bytes, final: bool) -> None:
        pending = len(self.inner.getstate()[0])
        try:
            text = self.decoder.decode(data, final=final)
        except UnicodeError as e:
            at = self.offset - pending + getattr(e, "start", 0)
            bad = getattr(e, "object", b"")[getattr(e, "start", 0) : getattr(e, "start", 0) + 1]
            byte = f"byte 0x{bad[0]:02x} at offset {at}" if bad else f"at offset {at}"
            raise HeadclsError(
                f"{self.path}: is not {self.named} text ({byte}); if the file is in another encoding, "
                "pass it with --encoding (e.g. --encoding latin-1)"
            ) from None
        nul = text.find("\x00")
        if nul >= 0:
            raise HeadclsError(
                f"{self.path}: contains a NUL character (character {self.chars + nul} of the {self.codec} text); "
                "this is not a text file, or not in this encoding (pass --encoding)"
            )
        self.offset += len(data)
        self.chars += len(text)
        self.buffer += text

    def _fill(self) -> bool:
        if self.done:
            return False
        data = self.raw.read(self.CHUNK)
        self.done = not data
        self._feed(data, final=self.done)
        return True

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        while (size is None or size < 0 or len(self.buffer) < size) and self._fill():
            pass
        if size is None or size < 0:
            size = len(self.buffer)
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def readline(self, size: int | None = -1) -> str:
        while "\n" not in self.buffer and self._fill():
            pass
        end = self.buffer.find("\n") + 1 or len(self.buffer)
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def close(self) -> None:
        self.raw.close()
        super().close()
