"""Read side: the columnar file of an experiment's index (``.index/<experiment>.cols``), built and read.

Layout, little-endian: ``MMCOLS1\\n``, the header's length (u32) and CRC-32 (u32), the header (JSON),
then the blobs. The header lists each blob's offset, length and CRC-32; a reader fetches a blob with
one ``pread`` the first time a search needs it and checks its CRC, so a search reads only its columns:

* the run table: ``names`` (run folder names, NUL-separated), ``d`` (folder mtime_ns, int64), ``ok``
  (finished and settled, u8), and one column per record field: distinct values (JSON) and u32 codes,
  or int64 values and the rows that have none (start and end times);
* per param and tag key, the rows that have it (u32, ascending) with value codes and distinct values;
  per metric key, the rows and last values (float64);
* ``detail``: per row, what re-checking the run compares (file signatures, metric aggregates), JSON
  at an int64 start and end (the JSON texts lie in the order the runs were read, not in row order);
  ``warnings``: ``{row: [...]}``.

Rows are kept in ``search_runs``' default order (newest start first, then run id), so a search without
``order_by`` sorts nothing. The file is written whole (temporary file + rename) and never changed.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import sys
import zlib
from array import array
from collections.abc import Callable
from typing import Any

MAGIC = b"MMCOLS1\n"
VERSION = 2  # 2: details at a start and an end per row (1: ascending offsets)
_PREFIX = struct.Struct("<8sII")
#: The record fields stored as columns, in RunRecord's order (run_id is the row's name).
FIELDS = (
    "run_name",
    "status",
    "start_time",
    "end_time",
    "lifecycle_stage",
    "user",
    "parent_run_id",
    "newer_format",
)
INT_FIELDS = frozenset({"start_time", "end_time"})
KINDS = ("p", "t", "x")  # params, tags, metrics
_PLAIN = frozenset({str, type(None)})  # values no value of another class equals
_INT64 = (-(1 << 63), (1 << 63) - 1)
_FS_CODEC = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())  # what os.fsencode uses
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


_LONG_NUMBER = re.compile(rb"-[0-9]{19}|[0-9]{20}").search
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _long_number(data: bytes) -> bool:
    """Whether ``data`` holds a run of digits as long as an integer orjson cannot keep (see ``loads``)."""
    if len(data) < 4096:
        return _LONG_NUMBER(data) is not None
    # A big blob (100,000 run names): the regular expression took ~30 ns a byte, this ~1.
    zeros = data.translate(_DIGITS_AS_ZERO)
    return b"0" * 20 in zeros or b"-" + b"0" * 19 in zeros


class IndexFormatError(ValueError):
    """An index file that is not ours, of another version, cut short or damaged (it is rebuilt)."""


try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _dumps: Callable[[Any], bytes] | None = orjson.dumps
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib reads the same JSON
    _loads, _dumps = json.loads, None


def loads(data: bytes) -> Any:
    """JSON as written here (NaN and ±Infinity spelled as the stdlib spells them; integers of any size)."""
    # orjson reads an integer beyond 64 bits as a float, silently changing it (a 128-bit seed logged as
    # a param): such a number (20 digits, or 19 after a minus) sends the text to the stdlib, which keeps
    # every integer whole. The index's nanosecond times have 19 digits and stay on the fast path.
    if not _long_number(data):
        try:
            return _loads(data)
        except ValueError:
            pass  # NaN / Infinity, which orjson refuses
    return json.loads(data)


def dumps(value: Any) -> bytes:
    """JSON of any value read from a store (NaN, huge integers and lone surrogates included)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def dump_fast(value: Any) -> bytes:
    """JSON of a value without NaN or infinities (orjson when it can, else :func:`dumps`)."""
    if _dumps is not None:
        try:
            return _dumps(value)
        except TypeError:  # an integer beyond 64 bits, a lone surrogate: the stdlib writes them
            pass
    return dumps(value)


def _value_key(value: Any) -> Any:
    """Tells values apart as their JSON does: 1, 1.0, True and "1" differ; so do 0.0 and -0.0."""
    cls = value.__class__
    if cls is float:
        return (cls, repr(value))
    if cls in (str, int, bool) or value is None:
        return (cls, value)
    return ("json", json.dumps(value, sort_keys=True))


def code_type(distinct: int) -> str:
    """The array type of codes for this many distinct values: one byte each up to 256 (a mask is then
    one ``bytes.translate``), two up to 65,536, else four."""
    return "B" if distinct <= 256 else "H" if distinct <= 65536 else "I"


def encode_values(values: list[Any]) -> tuple[array[int], list[Any]]:
    """Dictionary encoding: codes (as small as the number of distinct values allows) and the distinct
    values in first-seen order."""
    if _keys_are_values(values):  # the usual column: values are their own keys, encoded in C loops
        own = list(dict.fromkeys(values))
        seen = dict(zip(own, range(len(own)), strict=True))
        return array(code_type(len(seen)), map(seen.__getitem__, values)), own
    if set(map(type, values)) == {float}:  # floats with a zero or a NaN: only those need a key apart
        keys = [v if v == v and v else repr(v) for v in values]  # 0.0, -0.0 and NaN by their text
        first = dict(zip(keys, values, strict=True))  # first-seen order; a key's values are all alike
        code_of = {key: code for code, key in enumerate(first)}
        return array(code_type(len(first)), list(map(code_of.__getitem__, keys))), list(first.values())
    keyed: dict[Any, int] = {}
    distinct: list[Any] = []
    codes: list[int] = []
    append = codes.append
    for value in values:
        key = _value_key(value)
        code = keyed.get(key)
        if code is None:
            code = keyed[key] = len(distinct)
            distinct.append(value)
        append(code)
    return array(code_type(len(distinct)), codes), distinct


def _keys_are_values(values: list[Any]) -> bool:
    """Whether the values tell themselves apart as ``_value_key`` does: strings and None, with one kind
    of number at most (1 and 1.0 are one key in a dict; bools are left out, True is 1), its floats
    with neither a zero (0.0 == -0.0) nor a NaN (NaN != NaN), and nothing else (lists, dicts)."""
    classes = set(map(type, values))
    numbers = classes - _PLAIN
    if len(numbers) > 1 or not numbers <= {int, float}:
        return False
    if float in numbers:
        floats = values if len(classes) == 1 else [v for v in values if v.__class__ is float]
        return 0.0 not in floats and not any(map(math.isnan, floats))
    return True


class Builder:
    """Rows of a new columnar file, added one run at a time (``encode`` sorts them and packs them)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.d: list[int] = []
        self.ok: list[int] = []
        self.rows: list[
            tuple[Any, ...]
        ] = []  #: each run's fields (``FIELDS``), split into columns at the end
        self.keys: dict[str, dict[str, tuple[list[int], list[Any]]]] = {k: {} for k in KINDS}
        # Details in one buffer: 100,000 small bytes objects cost far more than their bytes.
        self.details = bytearray()
        self.detail_ends = array("q")
        self.warnings: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def add(
        self,
        name: str,
        d: int,
        ok: bool,
        fields: tuple[Any, ...],
        values: tuple[dict[str, Any], dict[str, Any], dict[str, float]],
        warnings: list[str],
        detail: bytes,
    ) -> None:
        """One run: its folder name, folder mtime, settled flag, field values (``FIELDS`` order), its
        params, tags and last metric values, warnings, and its detail (JSON bytes)."""
        row = len(self.names)
        self.names.append(name)
        self.d.append(d)
        self.ok.append(1 if ok else 0)
        self.rows.append(fields)
        for kind, mapping in zip(KINDS, values, strict=True):
            columns = self.keys[kind]
            for key, value in mapping.items():
                column = columns.get(key)
                if column is None:
                    column = columns[key] = ([], [])
                column[0].append(row)
                column[1].append(value)
        if warnings:
            self.warnings[row] = warnings
        self.details += detail
        self.detail_ends.append(len(self.details))

    def encode(self, extra: dict[str, Any], build_id: str) -> bytes:
        """The file's bytes: rows in the default order, every column packed, ``extra`` in the header."""
        n = len(self.names)
        fields = list(zip(*self.rows, strict=True)) if n else [() for _ in FIELDS]
        if len(fields) != len(FIELDS):
            raise ValueError("a run's fields do not match FIELDS")
        starts = fields[FIELDS.index("start_time")]
        names = self.names
        keys = [(start is None, -(start or 0), name) for start, name in zip(starts, names, strict=True)]
        order = sorted(range(n), key=keys.__getitem__)
        new_row = [0] * n
        for new, old in enumerate(order):
            new_row[old] = new
        blobs: list[bytes] = []

        def blob(data: bytes | array[Any]) -> int:
            blobs.append(data if isinstance(data, bytes) else data.tobytes())
            return len(blobs) - 1

        cols: dict[str, Any] = {
            "names": blob("\0".join(map(names.__getitem__, order)).encode(*_FS_CODEC)),
            # Run ids all have one length (32 hex digits): then one row's name is a slice, no split.
            "width": _same_width(names),
            "d": blob(array("q", map(self.d.__getitem__, order))),
            "ok": blob(bytes(map(self.ok.__getitem__, order))),
        }
        for field, column in zip(FIELDS, fields, strict=True):
            cols["f." + field] = _encode_field(
                field in INT_FIELDS, list(map(column.__getitem__, order)), blob
            )
        for kind, columns in self.keys.items():
            for key, (rows, values) in columns.items():
                if len(rows) == n:  # every run has this key (rows are then 0..n-1): no sort needed
                    moved_rows, moved = array("I", range(n)), list(map(values.__getitem__, order))
                else:
                    pairs = sorted(zip([new_row[r] for r in rows], values, strict=True), key=lambda p: p[0])
                    moved_rows = array("I", [r for r, _ in pairs])
                    moved = [v for _, v in pairs]
                entry: dict[str, Any] = {"rows": blob(moved_rows)}
                if kind == "x":
                    entry["vals"] = blob(array("d", moved))
                else:
                    codes, distinct = encode_values(moved)
                    entry["codes"], entry["values"] = blob(codes), blob(dumps_values(distinct))
                cols[f"{kind}.{key}"] = entry
        # Details stay in the order they were added (no copy of each): each row says where its text is.
        ends = self.detail_ends
        begins = array("q", [0])
        begins.extend(ends[:-1])
        cols["detail"] = {
            "starts": blob(array("q", map(begins.__getitem__, order))),
            "ends": blob(array("q", map(ends.__getitem__, order))),
            "data": blob(bytes(self.details)),
        }
        cols["warnings"] = blob(dumps({str(new_row[r]): w for r, w in self.warnings.items()}))
        return _pack(blobs, {"v": VERSION, "id": build_id, "n": n, "cols": cols, "extra": extra})


def _same_width(names: list[str]) -> int:
    widths = {len(n) for n in names}
    if len(widths) != 1:
        return 0
    width = widths.pop()
    return width if all(n.isascii() and "\0" not in n for n in names) else 0


def _encode_field(is_int: bool, values: list[Any], blob: Callable[[Any], int]) -> dict[str, Any]:
    if is_int:
        none = [i for i, v in enumerate(values) if v is None] if None in values else []
        ints = [0 if v is None else v for v in values] if none else values
        if set(map(type, ints)) <= {int} and (not ints or _INT64[0] <= min(ints) <= max(ints) <= _INT64[1]):
            return {"vals": blob(array("q", ints)), "none": none}
    codes, distinct = encode_values(values)
    return {"codes": blob(codes), "values": blob(dumps_values(distinct))}


def dumps_values(values: list[Any]) -> bytes:
    """JSON of a column's distinct values: orjson when they are all strings (it writes the same
    strings ~10x faster), else :func:`dumps` (orjson would write NaN as null)."""
    return dump_fast(values) if set(map(type, values)) <= {str} else dumps(values)


def _pack(blobs: list[bytes], header: dict[str, Any]) -> bytes:
    """Prefix, header and blobs; blob offsets count from the end of the header."""
    table, offset = [], 0
    for data in blobs:
        table.append([offset, len(data), zlib.crc32(data)])
        offset += len(data)
    header["blobs"] = table
    head = dumps(header)
    return b"".join([_PREFIX.pack(MAGIC, len(head), zlib.crc32(head)), head, *blobs])


class ColumnFile:
    """An open columnar file (or its bytes): the header, and blobs read and checked on demand."""

    def __init__(self, read: Callable[[int, int], bytes], close: Callable[[], None] = lambda: None) -> None:
        self._read = read
        self._close = close
        self.header, self._base = _header(read)
        self.n: int = self.header["n"]
        self.cols: dict[str, Any] = self.header["cols"]
        self._names_blob: bytes | None = None
        #: Set when something read from the file was out of shape: the index is then rebuilt.
        self.damaged = False

    @classmethod
    def from_bytes(cls, data: bytes) -> ColumnFile:
        """A file's bytes held in memory (a store where the index cannot be written)."""
        return cls(lambda size, at: data[at : at + size])

    @classmethod
    def open(cls, name: str, dir_fd: int) -> ColumnFile:
        """Open ``name`` in the folder ``dir_fd`` (never through a symbolic link); OSError or
        IndexFormatError when it cannot be used. The descriptor stays open: a file replaced meanwhile
        is still read whole, as it was."""
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IndexFormatError("not a regular file")
            return cls(lambda size, at: _pread(fd, size, at), lambda: os.close(fd))
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        close, self._close = self._close, lambda: None
        close()

    def blob(self, number: int) -> bytes:
        try:
            offset, size, crc = self.header["blobs"][number]
        except (IndexError, TypeError, ValueError, KeyError) as exc:
            raise IndexFormatError(f"no blob {number}") from exc
        data = self._read(size, self._base + offset)
        if len(data) != size or zlib.crc32(data) != crc:
            raise IndexFormatError(f"blob {number} is cut short or damaged")
        return data

    def blob_part(self, number: int, start: int, size: int) -> bytes:
        """``size`` bytes from ``start`` within a blob (one row's detail), not checked against the
        blob's CRC: a damaged part fails to parse, and a detail only decides what to read again."""
        try:
            offset, total, _ = self.header["blobs"][number]
        except (IndexError, TypeError, ValueError, KeyError) as exc:
            raise IndexFormatError(f"no blob {number}") from exc
        if not 0 <= start <= start + size <= total:
            raise IndexFormatError(f"blob {number}: part out of range")
        data = self._read(size, self._base + offset + start)
        if len(data) != size:
            raise IndexFormatError(f"blob {number} is cut short")
        return data

    def array(self, number: int, typecode: str) -> array[Any]:
        out = array(typecode)
        data = self.blob(number)
        if len(data) % out.itemsize:
            raise IndexFormatError(f"blob {number} is not a whole {typecode} array")
        out.frombytes(data)
        return out

    def json(self, number: int) -> Any:
        try:
            return loads(self.blob(number))
        except ValueError as exc:
            raise IndexFormatError(f"blob {number} is not JSON") from exc

    def name(self, row: int) -> str:
        """One row's name, read without splitting them all when they have one width."""
        width = self.cols.get("width") or 0
        if not width:
            return self.names()[row]
        if self._names_blob is None:
            self._names_blob = self.blob(self.cols["names"])
            if len(self._names_blob) != max(0, self.n * (width + 1) - 1):
                raise IndexFormatError("names do not have their width")
        at = row * (width + 1)
        return self._names_blob[at : at + width].decode("ascii")

    def names(self) -> list[str]:
        data = self.blob(self.cols["names"])
        text = data.decode(*_FS_CODEC)  # as os.fsdecode would, in one call
        names = text.split("\0") if self.n else []
        if len(names) != self.n:
            raise IndexFormatError("names do not match the row count")
        return names


def _pread(fd: int, size: int, at: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, at)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        at += len(chunk)
    return b"".join(chunks)


def _header(read: Callable[[int, int], bytes]) -> tuple[dict[str, Any], int]:
    """The header and where the blobs start."""
    prefix = read(_PREFIX.size, 0)
    if len(prefix) != _PREFIX.size:
        raise IndexFormatError("too short")
    magic, size, crc = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise IndexFormatError("not a columnar index file")
    head = read(size, _PREFIX.size)
    if len(head) != size or zlib.crc32(head) != crc:
        raise IndexFormatError("header cut short or damaged")
    try:
        header = loads(head)
        if header["v"] != VERSION or not isinstance(header["n"], int) or not isinstance(header["cols"], dict):
            raise IndexFormatError("another version")
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError("header is not ours") from exc
    return header, _PREFIX.size + size
