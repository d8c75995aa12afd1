"""pg_dump's custom-format archive, read as it streams, to prove it complete and readable.

What `pg_dump --format=custom` writes to a pipe: a header, the table of contents (TOC), then one
data block per TOC entry that has data. A data block is a run of length-prefixed chunks ended by a
zero length; the chunks of one table carry one zlib stream (or raw bytes when uncompressed). Large
objects come in blocks holding, per object, its OID and such a run, ended by OID 0.

`CustomArchiveReader` walks all of it in constant memory: every structure must parse, every data
block must belong to a TOC entry that has data and appear once, every zlib stream must inflate to
its end (zlib checks its own Adler-32), and the archive must end right after the last block. That
is what `pg_restore` needs to read the archive back, so a truncated or corrupt archive fails here.
Archive versions or compression methods it does not know raise `ArchiveUnsupported`, so the caller
can fall back to `pg_restore` itself.
"""

from __future__ import annotations

import enum
import importlib
import zlib
from dataclasses import dataclass
from typing import Any


def _inflate_module() -> Any:
    """zlib-ng when installed: the same streams, inflated several times faster than zlib."""
    try:
        return importlib.import_module("zlib_ng.zlib_ng")
    except ImportError:
        return zlib


_ZLIB: Any = _inflate_module()


def inflate_library() -> str:
    """What inflates the archives' data here: "zlib-ng" or Python's own "zlib"."""
    return "zlib" if _ZLIB is zlib else "zlib-ng"


MAGIC = b"PGDMP"
FORMAT_CUSTOM = 1
OLDEST_VERSION = (1, 14)  # pg_dump 12; older archives go to pg_restore
# pg_dump 12-15 write 1.14, the only version checked against real archives here (PostgreSQL 15).
# The 1.15 (pg_dump 16) and 1.16 (pg_dump 17-18) fields are read below, but until this reader has
# been run over real archives of those versions they go to pg_restore: a wrong rejection would
# fail every backup.
NEWEST_VERSION = (1, 14)
BLOCK_DATA = 1
BLOCK_BLOBS = 3
OFFSET_FLAGS = frozenset({1, 2, 3})  # position not set, set, no data
# Limits no real archive reaches, so that garbage fails fast instead of being waited for.
MAX_STRING_BYTES = 1 << 30
MAX_TOC_ENTRIES = 1 << 26
MAX_CHUNK_BYTES = 1 << 30
# Inflated output is produced and dropped in steps of this size: memory stays bounded.
INFLATE_STEP_BYTES = 1 << 20
INFLATE_INPUT_BYTES = 1 << 18


class ArchiveInvalid(Exception):
    """The bytes are not a complete, readable custom-format archive; the message says where."""


class ArchiveUnsupported(Exception):
    """A custom-format archive of a version or compression this reader does not know."""


class _NeedMore(Exception):
    """Not enough bytes buffered yet for the next structure."""


class _Stage(enum.Enum):
    HEADER = "header"
    TOC_COUNT = "toc count"
    TOC_ENTRY = "toc entry"
    BLOCK = "block header"
    CHUNK_LENGTH = "chunk length"
    CHUNK_BODY = "chunk body"
    BLOB_OID = "large object oid"


@dataclass(frozen=True)
class ArchiveHeader:
    version: tuple[int, int, int]
    int_size: int
    offset_size: int
    compressed: bool
    database: str | None
    server_version: str | None
    pg_dump_version: str | None


class _Cursor:
    """Reads the archive's primitive types from a buffer; raises _NeedMore at its end."""

    def __init__(self, data: memoryview, position: int, int_size: int = 4) -> None:
        self.data = data
        self.position = position
        self.int_size = int_size

    def take(self, size: int) -> memoryview:
        end = self.position + size
        if end > len(self.data):
            raise _NeedMore
        piece = self.data[self.position : end]
        self.position = end
        return piece

    def byte(self) -> int:
        return self.take(1)[0]

    def integer(self) -> int:
        # A sign byte, then the magnitude, least significant byte first.
        sign = self.byte()
        magnitude = int.from_bytes(self.take(self.int_size), "little")
        if sign not in (0, 1):
            raise ArchiveInvalid(f"bad integer sign byte {sign} at offset {self.position}")
        return -magnitude if sign else magnitude

    def string(self) -> str | None:
        length = self.integer()
        if length == -1:
            return None
        if not 0 <= length <= MAX_STRING_BYTES:
            raise ArchiveInvalid(f"bad string length {length} at offset {self.position}")
        return bytes(self.take(length)).decode("utf-8", errors="replace")


class CustomArchiveReader:
    """Feed it the archive's bytes in order (`feed`), then call `finish`.

    Raises ArchiveInvalid as soon as the bytes cannot be a valid archive, and from `finish` when
    the archive stopped early; raises ArchiveUnsupported from the header of an archive it cannot
    read, before consuming anything else.
    """

    def __init__(self) -> None:
        self.header: ArchiveHeader | None = None
        self.inflated_bytes = 0  # data bytes after decompression, for tests and logs
        self._stage = _Stage.HEADER
        self._pending = b""  # bytes received but not yet consumed (at most one structure)
        self._offset = 0  # archive offset of _pending[0], for messages
        self._toc_left = 0
        self._with_data: set[int] = set()
        self._seen: set[int] = set()
        self._dump_id = 0
        self._in_blobs = False
        self._chunk_left = 0
        self._inflater: Any = None

    @property
    def int_size(self) -> int:
        return self.header.int_size if self.header else 4

    def feed(self, data: bytes) -> None:
        buffer = memoryview(self._pending + data if self._pending else data)
        position = 0
        try:
            while position < len(buffer):
                position = self._step(buffer, position)
        except _NeedMore:
            pass
        self._offset += position
        self._pending = bytes(buffer[position:])

    def finish(self) -> None:
        if self.header is None:
            raise ArchiveInvalid("the archive is empty or ends inside its header")
        if self._stage is not _Stage.BLOCK or self._pending:
            raise ArchiveInvalid(
                f"the archive is truncated: it ends inside a {self._stage.value}"
                + (f" of TOC entry {self._dump_id}" if self._dump_id else "")
                + f" at offset {self._offset + len(self._pending)}"
            )
        missing = self._with_data - self._seen
        if missing:
            raise ArchiveInvalid(
                f"the archive is truncated: no data for {len(missing)} TOC entries "
                f"(first: {min(missing)})"
            )

    # -----------------------------------------------------------------------------------------

    def _step(self, buffer: memoryview, position: int) -> int:
        """Consume one structure (or one piece of chunk data) at `position`; return the next."""
        if self._stage is _Stage.CHUNK_BODY:
            size = min(self._chunk_left, len(buffer) - position)
            self._inflate(buffer[position : position + size])
            self._chunk_left -= size
            if self._chunk_left == 0:
                self._stage = _Stage.CHUNK_LENGTH
            return position + size
        cursor = _Cursor(buffer, position, self.int_size)
        if self._stage is _Stage.HEADER:
            self.header = self._read_header(cursor)
            self._stage = _Stage.TOC_COUNT
        elif self._stage is _Stage.TOC_COUNT:
            self._toc_left = cursor.integer()
            if not 0 <= self._toc_left <= MAX_TOC_ENTRIES:
                raise ArchiveInvalid(f"bad TOC entry count {self._toc_left}")
            self._stage = _Stage.TOC_ENTRY if self._toc_left else _Stage.BLOCK
        elif self._stage is _Stage.TOC_ENTRY:
            self._read_toc_entry(cursor)
            self._toc_left -= 1
            if self._toc_left == 0:
                self._stage = _Stage.BLOCK
        elif self._stage is _Stage.BLOCK:
            self._start_block(cursor.byte(), cursor.integer())
        elif self._stage is _Stage.BLOB_OID:
            if cursor.integer() == 0:
                self._in_blobs = False
                self._stage = _Stage.BLOCK
            else:
                self._start_stream()
        elif self._stage is _Stage.CHUNK_LENGTH:
            length = cursor.integer()
            if length == 0:
                self._end_stream()
            elif 0 < length <= MAX_CHUNK_BYTES:
                self._chunk_left = length
                self._stage = _Stage.CHUNK_BODY
            else:
                raise ArchiveInvalid(
                    f"bad chunk length {length} in the data of TOC entry {self._dump_id}"
                )
        return cursor.position

    def _read_header(self, cursor: _Cursor) -> ArchiveHeader:
        if bytes(cursor.take(len(MAGIC))) != MAGIC:
            raise ArchiveInvalid("not a pg_dump custom-format archive (no PGDMP header)")
        version = (cursor.byte(), cursor.byte(), cursor.byte())
        int_size, offset_size, archive_format = cursor.byte(), cursor.byte(), cursor.byte()
        if archive_format != FORMAT_CUSTOM:
            raise ArchiveInvalid(f"not a custom-format archive (format {archive_format})")
        if not OLDEST_VERSION <= version[:2] <= NEWEST_VERSION:
            raise ArchiveUnsupported(f"archive version {'.'.join(map(str, version))}")
        if not (1 <= int_size <= 8 and 1 <= offset_size <= 8):
            raise ArchiveInvalid(f"bad integer sizes {int_size}/{offset_size} in the header")
        cursor.int_size = int_size
        if version[:2] >= (1, 15):
            algorithm = cursor.byte()  # 0 none, 1 gzip, 2 lz4, 3 zstd
            if algorithm not in (0, 1):
                raise ArchiveUnsupported(f"compression algorithm {algorithm}")
            compressed = algorithm == 1
        else:
            level = cursor.integer()  # a zlib level; 0 is none, -1 zlib's default
            if not -1 <= level <= 9:
                raise ArchiveInvalid(f"bad compression level {level} in the header")
            compressed = level != 0
        for _ in range(7):  # creation time: seconds, minutes, ... year, isdst
            cursor.integer()
        return ArchiveHeader(
            version,
            int_size,
            offset_size,
            compressed,
            cursor.string(),
            cursor.string(),
            cursor.string(),
        )

    def _read_toc_entry(self, cursor: _Cursor) -> None:
        assert self.header is not None
        dump_id = cursor.integer()
        if dump_id <= 0:
            raise ArchiveInvalid(f"bad TOC entry id {dump_id}")
        has_data = cursor.integer() != 0
        for _ in range(4):  # table oid, oid, tag, description
            cursor.string()
        cursor.integer()  # section
        for _ in range(5):  # definition, drop, copy statement, schema, tablespace
            cursor.string()
        cursor.string()  # table access method
        if self.header.version[:2] >= (1, 16):
            cursor.integer()  # relkind
        cursor.string()  # owner
        cursor.string()  # "with oids", always false
        while cursor.string() is not None:  # dependencies, ended by a null string
            pass
        flag = cursor.byte()
        cursor.take(self.header.offset_size)
        if flag not in OFFSET_FLAGS:
            raise ArchiveInvalid(f"bad data offset flag {flag} in TOC entry {dump_id}")
        if has_data:
            self._with_data.add(dump_id)

    def _start_block(self, block_type: int, dump_id: int) -> None:
        if block_type not in (BLOCK_DATA, BLOCK_BLOBS):
            raise ArchiveInvalid(
                f"bad data block type {block_type} at offset {self._offset} "
                "(corrupt, or bytes after the end of the archive)"
            )
        if dump_id not in self._with_data:
            raise ArchiveInvalid(f"a data block for TOC entry {dump_id}, which has no data")
        if dump_id in self._seen:
            raise ArchiveInvalid(f"a second data block for TOC entry {dump_id}")
        self._seen.add(dump_id)
        self._dump_id = dump_id
        if block_type == BLOCK_BLOBS:
            self._in_blobs = True
            self._stage = _Stage.BLOB_OID
        else:
            self._start_stream()

    def _start_stream(self) -> None:
        assert self.header is not None
        self._inflater = _ZLIB.decompressobj() if self.header.compressed else None
        self._stage = _Stage.CHUNK_LENGTH

    def _end_stream(self) -> None:
        inflater = self._inflater
        if inflater is not None and not inflater.eof:
            raise ArchiveInvalid(
                f"the compressed data of TOC entry {self._dump_id} stops before its end"
            )
        self._inflater = None
        self._stage = _Stage.BLOB_OID if self._in_blobs else _Stage.BLOCK

    def _inflate(self, data: memoryview) -> None:
        inflater = self._inflater
        if inflater is None:
            self.inflated_bytes += len(data)
            return
        for start in range(0, len(data), INFLATE_INPUT_BYTES):
            piece: Any = data[start : start + INFLATE_INPUT_BYTES]
            while piece:
                if inflater.eof:
                    raise ArchiveInvalid(
                        f"bytes after the end of the compressed data of TOC entry {self._dump_id}"
                    )
                try:
                    out = inflater.decompress(piece, INFLATE_STEP_BYTES)
                except _ZLIB.error as error:
                    raise ArchiveInvalid(
                        f"the compressed data of TOC entry {self._dump_id} is corrupt ({error})"
                    ) from None
                self.inflated_bytes += len(out)
                if inflater.unused_data:
                    raise ArchiveInvalid(
                        f"bytes after the end of the compressed data of TOC entry {self._dump_id}"
                    )
                piece = inflater.unconsumed_tail
