"""TFRecord shards of ``tf.train.Example``: writer, indexed reader, grain data source, Example codec.

Written without TensorFlow; the files stay readable by ``tf.data.TFRecordDataset``.

Record framing (standard TFRecord), all integers little-endian::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

    masked_crc = ((crc >> 15) | (crc << 17)) + 0xA282EAD8   (mod 2**32), crc = CRC32C (Castagnoli)

Index file ``NAME.tfrecord.index`` beside each shard ``NAME.tfrecord``::

    b"DFRIDX1\\n" | uint64 num_records | uint64 shard_file_size | num_records x (uint64 offset, uint64 length)

``offset`` is where the record's 8-byte length field starts, ``length`` is the data length (so the
record spans ``offset .. offset + length + 16``). The stored shard size detects a stale index (shard
bigger than recorded: the index is rebuilt by scanning, with a warning); a shard smaller than recorded
is truncated and reading an affected record raises. CRCs are always verified on read.

Example codec (``encode_example`` / ``decode_example``): every key ``k`` of the feature dict becomes one
or more ``Example`` features, and a reserved bytes feature ``_codec`` holds JSON
``{"version": 1, "types": {k: tag}}`` so decoding restores exact Python types and key order:

    ============================  ===========================  ===========================================
    value                         tag                          stored as
    ============================  ===========================  ===========================================
    bytes / str                   ``bytes`` / ``str``          ``k``: bytes_list [value] (str as UTF-8)
    int / bool                    ``int`` / ``bool``           ``k``: int64_list [value]
    float                         ``float``                    ``k``: bytes_list [8 bytes float64 LE]
    list|tuple of bytes/str       ``list[bytes]`` ...          ``k``: bytes_list (str as UTF-8)
    list|tuple of int/bool        ``tuple[int]`` ...           ``k``: int64_list
    list|tuple of float           ``list[float]`` ...          ``k``: bytes_list [float64 LE raw bytes]
    empty list|tuple              ``list[]`` / ``tuple[]``     ``k``: empty bytes_list
    numpy array / numpy scalar    ``ndarray`` / ``npscalar``   ``k``: bytes_list [C-order raw bytes, LE],
                                                               ``k/shape``: int64_list,
                                                               ``k/dtype``: bytes_list [``dtype.str``]
    ============================  ===========================  ===========================================

Floats are stored as raw float64 (``float_list`` is only float32) so they round-trip bit-exactly.
Arrays are stored little-endian; a big-endian array decodes with the equivalent little-endian dtype.
Decoded arrays are writable copies. An ``Example`` without ``_codec`` (e.g. written by TensorFlow)
decodes generically: each feature to a list of bytes / ints / floats.
"""

from __future__ import annotations

import glob as _glob
import json
import math
import os
import struct
import threading
import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, SupportsIndex

import cv2
import google_crc32c
import numpy as np
from tensorflow_datasets.proto import tf_example_pb2

__all__ = [
    "CODEC_KEY",
    "INDEX_SUFFIX",
    "SHARD_SUFFIX",
    "CorruptRecordError",
    "TruncatedRecordError",
    "MissingIndexWarning",
    "crc32c",
    "mask_crc",
    "masked_crc32c",
    "frame_record",
    "index_path",
    "read_index",
    "write_index",
    "scan_shard",
    "iter_records",
    "ShardWriter",
    "ShardReader",
    "ShardedDataSource",
    "expand_shards",
    "encode_example",
    "decode_example",
    "CLIP_RECORD_VERSION",
    "encode_clip",
    "decode_clip",
    "decode_jpeg",
]

SHARD_SUFFIX = ".tfrecord"
INDEX_SUFFIX = ".index"
CODEC_KEY = "_codec"
CODEC_VERSION = 1

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_HEADER = struct.Struct("<QI")  # length, masked crc of length
_FOOTER = struct.Struct("<I")  # masked crc of data
_HEADER_SIZE = _HEADER.size  # 12
_OVERHEAD = _HEADER_SIZE + _FOOTER.size  # 16
_INDEX_MAGIC = b"DFRIDX1\n"
_INDEX_HEADER = struct.Struct("<8sQQ")
_INDEX_DTYPE = np.dtype("<u8")
_REBUILD_HINT = "run the data_prep command that built it again (it rebuilds damaged shards)"


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class CorruptRecordError(ValueError):
    """A record of a shard failed its length or data CRC check, or its framing is inconsistent.

    The message names the shard and record and asks to rebuild the shard with data_prep (and delete
    its index file).

    Args:
      shard: path of the shard file.
      record: number of the damaged record within the shard (0-based).
      problem: what is wrong with it.
    Attributes:
      shard: the shard path (str).
      record: the record number (int).
      problem: as given.
    """

    def __init__(self, shard: str | os.PathLike[str], record: int, problem: str) -> None:
        self.shard = os.fspath(shard)
        self.record = int(record)
        self.problem = problem
        super().__init__(
            f"shard {self.shard!r}, record {self.record}: {problem}; the shard is damaged: {_REBUILD_HINT}"
        )


class TruncatedRecordError(CorruptRecordError):
    """The shard file ends in the middle of a record.

    A subclass of ``CorruptRecordError`` (same arguments and attributes), so catching that catches both.
    """


class MissingIndexWarning(UserWarning):
    """A shard's index file was missing, stale or unreadable and was rebuilt by scanning the shard.

    Also issued when the rebuilt index could not be saved beside the shard.
    """


# --------------------------------------------------------------------------------------------------
# CRC and framing
# --------------------------------------------------------------------------------------------------


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if type(data) is bytes else bytes(data)


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """Plain CRC32C (Castagnoli) of ``data``.

    Args:
      data: the bytes to checksum.
    Returns:
      The unmasked CRC, an int in [0, 2**32).
    """
    return google_crc32c.value(_as_bytes(data))


def mask_crc(crc: int) -> int:
    """TFRecord CRC mask: rotate right by 15 bits and add 0xA282EAD8, modulo 2**32.

    Args:
      crc: a CRC32C value; only its low 32 bits are used.
    Returns:
      The masked CRC, an int in [0, 2**32).
    """
    crc &= _U32
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """Masked CRC32C of ``data`` as stored in TFRecord files.

    Args:
      data: the bytes to checksum.
    Returns:
      ``mask_crc(crc32c(data))``, an int in [0, 2**32).
    """
    return mask_crc(crc32c(data))


def frame_record(data: bytes | bytearray | memoryview) -> bytes:
    """The complete TFRecord framing of one record (header, data, footer) as bytes.

    Args:
      data: the record's payload (e.g. a serialized ``tf.train.Example``).
    Returns:
      ``len(data) + 16`` bytes: uint64 length, masked CRC of the length, data, masked CRC of the data.
    """
    data = _as_bytes(data)
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + _FOOTER.pack(masked_crc32c(data))


def _check_header(header: bytes, shard: str, record: int) -> int:
    """Validates a 12-byte record header; returns the data length."""
    length, length_crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        raise CorruptRecordError(shard, record, "length CRC mismatch")
    return length


def _check_data(data: bytes, footer: bytes, shard: str, record: int) -> None:
    (data_crc,) = _FOOTER.unpack(footer)
    if masked_crc32c(data) != data_crc:
        raise CorruptRecordError(shard, record, "data CRC mismatch")


# --------------------------------------------------------------------------------------------------
# Index
# --------------------------------------------------------------------------------------------------


def index_path(shard: str | os.PathLike[str]) -> str:
    """Path of the index file beside ``shard`` (``shard + '.index'``).

    Args:
      shard: path of the shard file (it need not exist).
    Returns:
      The index path, a str.
    """
    return os.fspath(shard) + INDEX_SUFFIX


def _encode_index(entries: np.ndarray, shard_size: int) -> bytes:
    entries = np.ascontiguousarray(entries, dtype=_INDEX_DTYPE).reshape(-1, 2)
    return _INDEX_HEADER.pack(_INDEX_MAGIC, len(entries), shard_size) + entries.tobytes()


def read_index(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Reads an index file; returns ``(entries, shard_size)``.

    Args:
      path: path of the index file (``index_path(shard)``).
    Returns:
      A pair (entries, shard_size): entries a ``(n, 2)`` uint64 array of (offset, data length) in
      bytes, one row per record, and the shard size in bytes the index was written for (int).
    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: naming the file, if it is malformed (too short, wrong magic number, or a size that
        does not match its record count).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < _INDEX_HEADER.size:
        raise ValueError(f"index file {path!r} is too short ({len(raw)} bytes)")
    magic, n, shard_size = _INDEX_HEADER.unpack_from(raw)
    if magic != _INDEX_MAGIC:
        raise ValueError(f"index file {path!r} has a bad magic number {magic!r}")
    if len(raw) != _INDEX_HEADER.size + 16 * n:
        raise ValueError(f"index file {path!r} has {len(raw)} bytes, expected {_INDEX_HEADER.size + 16 * n} for {n} records")
    entries = np.frombuffer(raw, dtype=_INDEX_DTYPE, offset=_INDEX_HEADER.size).reshape(n, 2).astype(np.uint64)
    return entries, shard_size


def _atomic_write(path: str, data: bytes, fsync: bool) -> None:
    tmp = f"{path}.tmp.{os.getpid()}.{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_index(shard: str | os.PathLike[str], entries: np.ndarray, *, fsync: bool = False) -> str:
    """Writes (atomically) the index of ``shard`` for the given (offset, length) entries; returns its path.

    The shard's current file size is recorded in the index (it is how readers detect a stale index).
    The index goes to a temporary file first, renamed into place.

    Args:
      shard: path of the shard, which must exist.
      entries: (n, 2) (offset, data length) in bytes per record (e.g. from ``scan_shard``); cast to
        uint64.
      fsync: flush the index file to disk before renaming it.
    Returns:
      The index path, ``index_path(shard)``.
    Raises:
      FileNotFoundError: ``shard`` does not exist.
      ValueError: ``entries`` does not reshape to (n, 2) (an odd number of values).
      OSError: the index file cannot be written.
    """
    shard = os.fspath(shard)
    path = index_path(shard)
    _atomic_write(path, _encode_index(entries, os.path.getsize(shard)), fsync)
    return path


def iter_records(shard: str | os.PathLike[str], *, with_positions: bool = False) -> Iterator[Any]:
    """Reads a shard sequentially, verifying every CRC; yields the data bytes of each record.

    Needs no index. The file is opened, and errors are raised, only as the iterator is consumed;
    records before a damaged one are yielded first.

    Args:
      shard: path of the shard file.
      with_positions: yield ``(offset, data)`` pairs instead, ``offset`` (int) being the byte at which
        the record's length field starts.
    Yields:
      The data bytes of each record in file order (or ``(offset, data)`` pairs when ``with_positions``).
    Raises:
      FileNotFoundError: ``shard`` does not exist.
      TruncatedRecordError: the file ends inside a record.
      CorruptRecordError: a record's length or data CRC does not match.
    """
    shard = os.fspath(shard)
    with open(shard, "rb") as f:
        record = 0
        offset = 0
        while True:
            header = f.read(_HEADER_SIZE)
            if not header:
                return
            if len(header) < _HEADER_SIZE:
                raise TruncatedRecordError(shard, record, f"file ends inside the record header at byte {offset + len(header)}")
            length = _check_header(header, shard, record)
            data = f.read(length)
            footer = f.read(_FOOTER.size)
            if len(data) < length or len(footer) < _FOOTER.size:
                raise TruncatedRecordError(shard, record, f"file ends inside the record (at byte {offset + _HEADER_SIZE + len(data) + len(footer)}, record needs {length + _OVERHEAD} bytes from {offset})")
            _check_data(data, footer, shard, record)
            yield (offset, data) if with_positions else data
            offset += length + _OVERHEAD
            record += 1


def scan_shard(shard: str | os.PathLike[str]) -> np.ndarray:
    """Builds the ``(n, 2)`` uint64 (offset, length) index of a shard by scanning it (CRCs verified).

    Args:
      shard: path of the shard file.
    Returns:
      uint64 (n, 2) array: per record, the byte offset of its length field and its data length in bytes.
    Raises:
      FileNotFoundError: ``shard`` does not exist.
      TruncatedRecordError: the file ends inside a record.
      CorruptRecordError: a record's length or data CRC does not match.
    """
    rows = [(offset, len(data)) for offset, data in iter_records(shard, with_positions=True)]
    return np.asarray(rows, dtype=np.uint64).reshape(-1, 2)


def _load_or_rebuild_index(shard: str, rebuild: bool, save: bool) -> np.ndarray:
    """Index entries of ``shard``: from the index file if present and current, else scanned (warning)."""
    ipath = index_path(shard)
    try:
        shard_size = os.path.getsize(shard)
    except FileNotFoundError:
        raise FileNotFoundError(f"shard file {shard!r} does not exist") from None
    reason: str
    try:
        entries, recorded_size = read_index(ipath)
    except FileNotFoundError:
        reason = "is missing"
    except ValueError as e:
        reason = f"is unreadable ({e})"
    else:
        if recorded_size >= shard_size:
            # Equal: current. Smaller shard than recorded: truncated; keep the index so intact records
            # stay readable and the damaged ones raise TruncatedRecordError when read.
            return entries
        reason = f"is stale (records a {recorded_size}-byte shard, the shard has {shard_size} bytes)"
    if not rebuild:
        raise FileNotFoundError(f"index {ipath!r} of shard {shard!r} {reason}; {_REBUILD_HINT}")
    warnings.warn(f"index {ipath!r} {reason}; rebuilding it by scanning shard {shard!r}", MissingIndexWarning, stacklevel=3)
    entries = scan_shard(shard)
    if save:
        try:
            write_index(shard, entries)
        except OSError as e:
            warnings.warn(f"could not save the rebuilt index {ipath!r}: {e}", MissingIndexWarning, stacklevel=3)
    return entries


def shard_problem(shard: str | os.PathLike[str], num_records: int | None = None, *,
                  check_crcs: bool = False) -> str | None:
    """Why a shard does not match its index (or the expected record count), or None when it does.

    Args:
      shard: the shard file.
      num_records: the record count it should hold (dataset_info.json / the build's manifest), or None.
      check_crcs: also read every record and check its CRCs (the whole file; about 2 GB/s).
    Returns:
      A phrase naming the problem ("is truncated: 1,203 of 2,006 bytes", "has no index", ...) or None.
    """
    shard = os.fspath(shard)
    try:
        size = os.path.getsize(shard)
    except FileNotFoundError:
        return "is missing"
    try:
        entries, recorded = read_index(index_path(shard))
    except FileNotFoundError:
        return f"has no index ({os.path.basename(index_path(shard))})"
    except ValueError as error:
        return f"has an unreadable index ({error})"
    if size != recorded:
        what = "is truncated" if size < recorded else "is longer than its index says"
        return f"{what}: {size:,} bytes, its index records {recorded:,}"
    if num_records is not None and len(entries) != num_records:
        return f"holds {len(entries)} records, {num_records} expected"
    if check_crcs:
        try:
            for _ in iter_records(shard):
                pass
        except (CorruptRecordError, ValueError) as error:
            return f"is damaged ({error})"
    return None


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class ShardWriter:
    """Writes records to one shard and its index, atomically.

    Data goes to a temporary file beside ``path``; ``close()`` (or leaving the ``with`` block normally)
    renames it to ``path`` and writes ``path + '.index'``. If the block raises (or ``abort()`` is called)
    the temporary file is removed and no shard appears. An existing shard is replaced unless
    ``overwrite=False``.

    >>> with ShardWriter("train-00000.tfrecord") as w:   # doctest: +SKIP
    ...     w.write(encode_example({"label": 3}))

    Args:
      path: where the shard is to appear; its folder must exist.
      overwrite: replace an existing shard at ``path`` (on ``close()``); False refuses it at once.
      fsync: flush the shard and its index to disk, and sync their folder, on ``close()``.
    Attributes:
      path: the shard path (str).
    Raises:
      FileExistsError: ``overwrite`` is False and ``path`` exists.
      FileNotFoundError: the folder of ``path`` does not exist (the temporary file cannot be created).
    """

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = True, fsync: bool = True) -> None:
        self.path = os.fspath(path)
        if not overwrite and os.path.exists(self.path):
            raise FileExistsError(f"shard {self.path!r} already exists (pass overwrite=True to replace it)")
        self._fsync = fsync
        self._tmp = f"{self.path}.tmp.{os.getpid()}.{uuid.uuid4().hex}"
        self._file = open(self._tmp, "wb")
        self._offsets: list[int] = []
        self._lengths: list[int] = []
        self._pos = 0
        self._state = "open"

    @property
    def num_records(self) -> int:
        """Records written so far."""
        return len(self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Appends one record; returns its record number within the shard.

        Args:
          data: the record's payload (e.g. from ``encode_example``), framed with its CRCs here.
        Returns:
          The record number, 0-based, in write order.
        Raises:
          ValueError: the writer is already closed or aborted.
        """
        if self._state != "open":
            raise ValueError(f"ShardWriter for {self.path!r} is {self._state}")
        data = _as_bytes(data)
        length = struct.pack("<Q", len(data))
        f = self._file
        f.write(length)
        f.write(struct.pack("<I", masked_crc32c(length)))
        f.write(data)
        f.write(_FOOTER.pack(masked_crc32c(data)))
        self._offsets.append(self._pos)
        self._lengths.append(len(data))
        self._pos += len(data) + _OVERHEAD
        return len(self._offsets) - 1

    def write_example(self, features: dict[str, Any]) -> int:
        """Encodes ``features`` with :func:`encode_example` and writes it; returns its record number.

        Args:
          features: the feature dict (see ``encode_example`` for the types it accepts).
        Returns:
          The record number, 0-based.
        Raises:
          TypeError: a key or value ``encode_example`` cannot store.
          ValueError: a reserved or colliding key or an out-of-range integer (``encode_example``), or
            the writer is already closed or aborted.
        """
        return self.write(encode_example(features))

    def close(self) -> None:
        """Finishes the shard: flushes, renames into place, writes the index. Idempotent.

        Does nothing after ``abort()``. An old index beside ``path`` is removed before the new shard
        is renamed into place.

        Raises:
          OSError: flushing, renaming or writing the index failed; the writer is then aborted (the
            temporary file removed) and the error re-raised.
        """
        if self._state != "open":
            return
        try:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            entries = np.column_stack([np.asarray(self._offsets, np.uint64), np.asarray(self._lengths, np.uint64)])
            index_bytes = _encode_index(entries, self._pos)
            # Remove the old index first: between the renames a reader sees a shard without index
            # (rebuilt by scanning), never a new shard with an old index.
            _remove_quietly(index_path(self.path))
            os.replace(self._tmp, self.path)
            _atomic_write(index_path(self.path), index_bytes, self._fsync)
            if self._fsync:
                self._sync_dir()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def _sync_dir(self) -> None:
        try:
            fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def abort(self) -> None:
        """Discards everything written; no shard file is created.

        Removes the temporary file. Does nothing after ``close()``; a shard already at ``path`` is
        left as it is.
        """
        if self._state == "closed":
            return
        self._state = "aborted"
        try:
            self._file.close()
        finally:
            _remove_quietly(self._tmp)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if getattr(self, "_state", None) == "open":
            self.abort()

    def __repr__(self) -> str:
        return f"ShardWriter({self.path!r}, records={self.num_records}, state={self._state!r})"


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


class ShardReader:
    """Random access to the records of one shard through its index.

    The file is opened lazily (once per process) and read with ``os.pread``, so one reader may be shared
    by threads; it pickles without its file handle. Both CRCs are verified on every read. A missing or
    stale index is rebuilt by scanning (with a :class:`MissingIndexWarning`) and saved when possible,
    unless ``rebuild_index=False``, which raises ``FileNotFoundError`` instead.

    An index is stale when it records a smaller shard than the file is. A shard smaller than its
    index records (truncated) keeps the index: its intact records stay readable and reading a damaged
    one raises :class:`TruncatedRecordError`. ``len(reader)`` is the number of records; ``reader[i]``
    is ``read_record(i)`` and iterating reads every record in order.

    Args:
      path: path of the shard file.
      rebuild_index: rebuild a missing, stale or unreadable index by scanning the shard; False raises.
      save_index: write a rebuilt index beside the shard (a failure to write only warns).
    Attributes:
      path: the shard path (str).
    Raises:
      FileNotFoundError: the shard does not exist, or its index is missing, stale or unreadable and
        ``rebuild_index`` is False.
      CorruptRecordError: rebuilding the index by scanning met a damaged record
        (:class:`TruncatedRecordError` for a truncated one).
    """

    def __init__(self, path: str | os.PathLike[str], *, rebuild_index: bool = True, save_index: bool = True) -> None:
        self.path = os.fspath(path)
        self._index = _load_or_rebuild_index(self.path, rebuild_index, save_index)
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    @property
    def index(self) -> np.ndarray:
        """The ``(n, 2)`` uint64 array of (offset, data length), in bytes, one row per record."""
        return self._index

    def __len__(self) -> int:
        return len(self._index)

    def _fileno(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            with self._lock:
                if self._fd is None or self._pid != pid:
                    # After a fork the inherited descriptor is left to the parent; open our own.
                    self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                    self._pid = pid
        return self._fd

    def _pread(self, size: int, offset: int) -> bytes:
        fd = self._fileno()
        if hasattr(os, "pread"):
            chunks = []
            while size > 0:
                chunk = os.pread(fd, size, offset)
                if not chunk:
                    break
                chunks.append(chunk)
                size -= len(chunk)
                offset += len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        with self._lock:  # pragma: no cover - platforms without pread
            os.lseek(fd, offset, os.SEEK_SET)
            return os.read(fd, size)

    def read_record(self, i: SupportsIndex) -> bytes:
        """The data bytes of record ``i`` (negative counts from the end); CRCs verified.

        Args:
          i: record number within the shard, -len(reader) <= i < len(reader).
        Returns:
          The record's data bytes.
        Raises:
          IndexError: ``i`` is out of range.
          TruncatedRecordError: the file ends inside the record.
          CorruptRecordError: a CRC does not match, or the stored length disagrees with the index.
          FileNotFoundError: the shard file was removed before it was first opened in this process.
        """
        n = len(self._index)
        i = i.__index__()
        record = i + n if i < 0 else i
        if not 0 <= record < n:
            raise IndexError(f"record {i} out of range for shard {self.path!r} with {n} records")
        offset, length = (int(v) for v in self._index[record])
        buf = self._pread(length + _OVERHEAD, offset)
        if len(buf) < _HEADER_SIZE:
            raise TruncatedRecordError(self.path, record, f"file ends inside the record header (record starts at byte {offset})")
        stored_length = _check_header(buf[:_HEADER_SIZE], self.path, record)
        if stored_length != length:
            raise CorruptRecordError(self.path, record, f"record length {stored_length} disagrees with the index ({length}); the index is stale or the shard damaged")
        if len(buf) < length + _OVERHEAD:
            raise TruncatedRecordError(self.path, record, f"file ends inside the record (record needs bytes {offset}..{offset + length + _OVERHEAD}, file has {offset + len(buf)})")
        data = buf[_HEADER_SIZE : _HEADER_SIZE + length]
        _check_data(data, buf[_HEADER_SIZE + length :], self.path, record)
        return data

    __getitem__ = read_record

    def __iter__(self) -> Iterator[bytes]:
        for i in range(len(self)):
            yield self.read_record(i)

    def close(self) -> None:
        """Closes the file (reopened on the next read).

        A descriptor inherited from another process is not closed, only dropped.
        """
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None and self._pid == os.getpid():
                os.close(fd)

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self, _getpid=os.getpid, _close=os.close) -> None:
        # os functions bound as defaults: at interpreter exit the os module may already be gone.
        fd = getattr(self, "_fd", None)
        if fd is not None and getattr(self, "_pid", -1) == _getpid():
            try:
                _close(fd)
            except OSError:
                pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = -1
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ShardReader({self.path!r}, records={len(self)})"


# --------------------------------------------------------------------------------------------------
# Grain data source
# --------------------------------------------------------------------------------------------------


def expand_shards(shards: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Shard paths from a directory (its ``*.tfrecord`` files, sorted), a glob pattern (sorted matches).

    Also from a single file, or a sequence of any of these (order kept). Glob matches ending in
    ``.index`` are left out; a single file is taken whatever its suffix. Directories are not searched
    recursively.

    Args:
      shards: a directory, glob pattern or file path (str or path-like), or a sequence of them.
    Returns:
      The shard paths (str), in that order.
    Raises:
      FileNotFoundError: a directory holds no ``*.tfrecord`` file, a pattern matches nothing, or a
        file path does not exist.
      ValueError: the sequence is empty.
    """
    if isinstance(shards, (str, os.PathLike)):
        spec = os.fspath(shards)
        if os.path.isdir(spec):
            found = sorted(_glob.glob(os.path.join(_glob.escape(spec), "*" + SHARD_SUFFIX)))
            if not found:
                raise FileNotFoundError(f"no *{SHARD_SUFFIX} shards in directory {spec!r}")
            return found
        if _glob.has_magic(spec):
            found = sorted(p for p in _glob.glob(spec) if not p.endswith(INDEX_SUFFIX))
            if not found:
                raise FileNotFoundError(f"no shards match {spec!r}")
            return found
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"shard file {spec!r} does not exist")
        return [spec]
    paths: list[str] = []
    for item in shards:
        paths.extend(expand_shards(item))
    if not paths:
        raise ValueError("no shards given")
    return paths


class ShardedDataSource:
    """Grain ``RandomAccessDataSource`` over the records of several shards, in shard order.

    ``ds[i]`` returns the data bytes of global record ``i``; global indices run through the shards in
    the given order (via cumulative record counts). Record counts come from the index files at
    construction; files are opened lazily in each process. Pickles without open files or indices, so
    grain worker processes can use it; safe to share between threads.

    Args:
      shards: a directory, glob pattern, shard file, or a sequence of them (see ``expand_shards``).
      rebuild_index: rebuild missing, stale or unreadable index files by scanning (see ``ShardReader``);
        False raises instead.
    Raises:
      FileNotFoundError: see ``expand_shards``; or a shard's index is missing, stale or unreadable and
        ``rebuild_index`` is False.
      ValueError: ``shards`` is an empty sequence.
      CorruptRecordError: rebuilding an index by scanning met a damaged record.
    """

    def __init__(self, shards: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, rebuild_index: bool = True) -> None:
        self._paths = expand_shards(shards)
        self._rebuild_index = rebuild_index
        readers = [ShardReader(p, rebuild_index=rebuild_index) for p in self._paths]
        counts = np.asarray([len(r) for r in readers], dtype=np.int64)
        self._ends = np.cumsum(counts)
        self._starts = self._ends - counts
        self._len = int(self._ends[-1]) if len(counts) else 0
        self._readers: dict[int, ShardReader] = dict(enumerate(readers))
        self._pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def shards(self) -> list[str]:
        """The shard paths, in global order."""
        return list(self._paths)

    @property
    def counts(self) -> list[int]:
        """Records per shard, in the order of ``shards``."""
        return [int(e - s) for s, e in zip(self._starts, self._ends)]

    def __len__(self) -> int:
        return self._len

    def locate(self, index: SupportsIndex) -> tuple[str, int]:
        """``(shard path, record number in the shard)`` of a global index.

        Args:
          index: global record index, -len(ds) <= index < len(ds) (negative counts from the end).
        Returns:
          (shard path, 0-based record number within that shard).
        Raises:
          IndexError: ``index`` is out of range.
        """
        shard, record = self._locate(index)
        return self._paths[shard], record

    def _locate(self, index: SupportsIndex) -> tuple[int, int]:
        i = index.__index__()
        g = i + self._len if i < 0 else i
        if not 0 <= g < self._len:
            raise IndexError(f"index {i} out of range for {self._len} records")
        shard = int(np.searchsorted(self._ends, g, side="right"))
        return shard, g - int(self._starts[shard])

    def _reader(self, shard: int) -> ShardReader:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._readers = {}
                    self._pid = os.getpid()
        reader = self._readers.get(shard)
        if reader is None:
            with self._lock:
                reader = self._readers.get(shard)
                if reader is None:
                    reader = ShardReader(self._paths[shard], rebuild_index=self._rebuild_index)
                    expected = int(self._ends[shard] - self._starts[shard])
                    if len(reader) != expected:
                        raise ValueError(f"shard {self._paths[shard]!r} now has {len(reader)} records, had {expected} when the data source was built")
                    self._readers[shard] = reader
        return reader

    def __getitem__(self, index: SupportsIndex) -> bytes:
        """The data bytes of global record ``index`` (negative counts from the end); CRCs verified.

        Raises:
          IndexError: ``index`` is out of range.
          CorruptRecordError: the record is damaged (:class:`TruncatedRecordError`: cut short).
          ValueError: the shard's record count changed since the data source was built.
          FileNotFoundError: the shard file was removed since the data source was built.
        """
        shard, record = self._locate(index)
        return self._reader(shard).read_record(record)

    def close(self) -> None:
        """Closes all open shard files (reopened on the next read)."""
        with self._lock:
            for reader in self._readers.values():
                reader.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = {}
        state["_pid"] = -1
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        n = len(self._paths)
        shown = repr(self._paths) if n <= 3 else f"[{self._paths[0]!r}, ..., {self._paths[-1]!r}]"
        return f"ShardedDataSource(num_shards={n}, num_records={self._len}, shards={shown})"


# --------------------------------------------------------------------------------------------------
# Example codec
# --------------------------------------------------------------------------------------------------

_SCALAR_TAGS = {bytes: "bytes", str: "str", bool: "bool", int: "int", float: "float"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_ints(key: str, values: Sequence[int]) -> None:
    for v in values:
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise ValueError(f"feature {key!r}: integer {v} does not fit in int64")


def _array_dtype(key: str, arr: np.ndarray) -> np.dtype:
    dt = arr.dtype
    if dt.kind in "OV" or dt.fields is not None or dt.subdtype is not None:
        raise TypeError(f"feature {key!r}: numpy dtype {dt} cannot be stored (object/structured dtypes unsupported)")
    return dt.newbyteorder("<") if dt.byteorder == ">" else dt


def encode_example(features: dict[str, Any]) -> bytes:
    """Serializes a feature dict to a ``tf.train.Example`` (see the module docstring for the scheme).

    Value types are matched exactly: a subclass of a supported type (e.g. an ``enum.IntEnum``
    member) is refused. Numpy scalars are stored as ``npscalar``.

    Args:
      features: ``{name: value}``; values bytes, str, int, bool, float, a list or tuple of one of
        these types, or a numpy array or scalar (not of object or structured dtype).
    Returns:
      The serialized Example (deterministic serialization).
    Raises:
      TypeError: a key is not a non-empty str, a value's type is not supported, a list or tuple mixes
        element types, or an array's dtype is object or structured.
      ValueError: a key is ``"_codec"``, a key collides with the ``k/shape`` or ``k/dtype`` companion
        key of an array feature ``k``, or an integer does not fit in int64.
    """
    example = tf_example_pb2.Example()
    fmap = example.features.feature
    tags: dict[str, str] = {}
    for key, value in features.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"feature keys must be non-empty str, got {key!r}")
        if key == CODEC_KEY or key in fmap:
            raise ValueError(f"feature key {key!r} is reserved or collides with a companion key of another feature")
        companions: list[str] = []
        vtype = type(value)
        if vtype in _SCALAR_TAGS:
            tag = _SCALAR_TAGS[vtype]
            feat = fmap[key]
            if tag == "bytes":
                feat.bytes_list.value.append(value)
            elif tag == "str":
                feat.bytes_list.value.append(value.encode("utf-8"))
            elif tag == "float":
                feat.bytes_list.value.append(struct.pack("<d", value))
            else:
                _check_ints(key, [value])
                feat.int64_list.value.append(int(value))
        elif vtype in (list, tuple):
            container = vtype.__name__
            elem_types = {type(v) for v in value}
            if not value:
                tag = f"{container}[]"
                fmap[key].bytes_list.SetInParent()
            elif len(elem_types) == 1 and (et := elem_types.pop()) in _SCALAR_TAGS:
                name = _SCALAR_TAGS[et]
                tag = f"{container}[{name}]"
                feat = fmap[key]
                if name == "bytes":
                    feat.bytes_list.value.extend(value)
                elif name == "str":
                    feat.bytes_list.value.extend(v.encode("utf-8") for v in value)
                elif name == "float":
                    feat.bytes_list.value.append(np.asarray(value, dtype="<f8").tobytes())
                else:
                    _check_ints(key, value)
                    feat.int64_list.value.extend(int(v) for v in value)
            else:
                raise TypeError(f"feature {key!r}: a {container} must hold elements of one type among bytes, str, int, bool, float; got {sorted(t.__name__ for t in {type(v) for v in value})}")
        elif isinstance(value, (np.ndarray, np.generic)):
            tag = "ndarray" if isinstance(value, np.ndarray) else "npscalar"
            arr = np.asarray(value)
            dt = _array_dtype(key, arr)
            arr = np.asarray(arr, dtype=dt, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            companions = [f"{key}/shape", f"{key}/dtype"]
            for c in companions:
                if c in features or c in fmap or c == CODEC_KEY:
                    raise ValueError(f"feature {key!r}: companion key {c!r} collides with another feature")
            fmap[key].bytes_list.value.append(arr.tobytes())
            fmap[companions[0]].int64_list.SetInParent()  # kind set even for a 0-d shape
            fmap[companions[0]].int64_list.value.extend(arr.shape)
            fmap[companions[1]].bytes_list.value.append(dt.str.encode("ascii"))
        else:
            raise TypeError(f"feature {key!r}: unsupported value type {vtype.__name__}")
        tags[key] = tag
    fmap[CODEC_KEY].bytes_list.value.append(json.dumps({"version": CODEC_VERSION, "types": tags}, separators=(",", ":")).encode("utf-8"))
    return example.SerializeToString(deterministic=True)


def _feature_values(feat: Any) -> list[Any]:
    kind = feat.WhichOneof("kind")
    if kind is None:
        return []
    return list(getattr(feat, kind).value)


def decode_example(data: bytes) -> dict[str, Any]:
    """Parses a serialized ``tf.train.Example`` produced by :func:`encode_example` back to the exact feature dict.

    Without a ``_codec`` feature, returns each feature as a list of its values.

    Args:
      data: the serialized Example.
    Returns:
      The feature dict, in the key order it was encoded with, with the original Python and numpy types
      (arrays as writable copies). Without ``_codec``: ``{name: list of bytes, ints or floats}``
      sorted by name.
    Raises:
      google.protobuf.message.DecodeError: ``data`` cannot be parsed as an Example.
      ValueError: the codec version is not supported, a declared feature is missing, an array's byte
        count does not match its shape and dtype, or a type tag is unknown.
    """
    example = tf_example_pb2.Example()
    example.ParseFromString(_as_bytes(data))
    fmap = example.features.feature
    if CODEC_KEY not in fmap:
        return {k: _feature_values(fmap[k]) for k in sorted(fmap)}
    meta = json.loads(fmap[CODEC_KEY].bytes_list.value[0].decode("utf-8"))
    if meta.get("version") != CODEC_VERSION:
        raise ValueError(f"unsupported example codec version {meta.get('version')!r} (this code reads {CODEC_VERSION})")
    out: dict[str, Any] = {}
    for key, tag in meta["types"].items():
        if key not in fmap:
            raise ValueError(f"example is missing feature {key!r} declared in its {CODEC_KEY!r} header")
        feat = fmap[key]
        if tag in ("ndarray", "npscalar"):
            raw = feat.bytes_list.value[0]
            shape = tuple(fmap[f"{key}/shape"].int64_list.value)
            dtype = np.dtype(fmap[f"{key}/dtype"].bytes_list.value[0].decode("ascii"))
            expected = dtype.itemsize * math.prod(shape)
            if len(raw) != expected:
                raise ValueError(f"feature {key!r}: {len(raw)} bytes do not make an array of shape {shape} and dtype {dtype}")
            arr = np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
            out[key] = arr if tag == "ndarray" else arr[()]
        elif tag == "bytes":
            out[key] = feat.bytes_list.value[0]
        elif tag == "str":
            out[key] = feat.bytes_list.value[0].decode("utf-8")
        elif tag == "int":
            out[key] = int(feat.int64_list.value[0])
        elif tag == "bool":
            out[key] = bool(feat.int64_list.value[0])
        elif tag == "float":
            (out[key],) = struct.unpack("<d", feat.bytes_list.value[0])
        else:
            container_name, _, elem = tag.partition("[")
            container = {"list": list, "tuple": tuple}.get(container_name)
            elem = elem.rstrip("]")
            if container is None:
                raise ValueError(f"feature {key!r}: unknown codec tag {tag!r}")
            if elem == "":
                values: list[Any] = []
            elif elem == "bytes":
                values = list(feat.bytes_list.value)
            elif elem == "str":
                values = [v.decode("utf-8") for v in feat.bytes_list.value]
            elif elem == "int":
                values = [int(v) for v in feat.int64_list.value]
            elif elem == "bool":
                values = [bool(v) for v in feat.int64_list.value]
            elif elem == "float":
                values = np.frombuffer(feat.bytes_list.value[0], dtype="<f8").tolist()
            else:
                raise ValueError(f"feature {key!r}: unknown codec tag {tag!r}")
            out[key] = container(values)
    return out


# --------------------------------------------------------------------------------------------------
# The clip record: what one shard record of a prepared clip holds
# --------------------------------------------------------------------------------------------------

CLIP_RECORD_VERSION = 2
"""Bumped whenever the fields below change; dataset_info.json records it. Version 2 dropped the stored
heat-maps (version 1 kept a copy at one resolution that no model read: each model renders its own
from the key-points); version 1 shards are refused with a message to rebuild them."""


def encode_clip(clip_id: str, label: int, split: str, scene: str, clip: Any, jpeg_quality: int = 95) -> bytes:
    """One serialized Example for a ``clips.PreparedClip`` and its labels.

    Fields: clip_id, label (0-based, dferjax.labels order), split ("train", "test" or "fold<k>"),
    scene ("" unless the dataset has scenes), frames (one JPEG per stored frame), keypoints float32
    (T, 18, 2) in crop pixels, sources int8 (T,) faces.FaceSource,
    frame_indices int32 (T,), num_source_frames, fps, notes (list of str), version.
    The clip's ``boxes`` are not stored.

    Args:
      clip_id: the clip's identifier (str).
      label: class index, 0-based, stored as int.
      split: the split name (str).
      scene: the scene name, "" where none (str).
      clip: a ``clips.PreparedClip`` (or an object with its fields): frames uint8 (T, S, S, 3) RGB,
        keypoints (T, 18, 2), sources (T,), frame_indices (T,), num_source_frames, fps, notes.
      jpeg_quality: OpenCV JPEG quality of the stored frames (0-100).
    Returns:
      The serialized Example (``CLIP_RECORD_VERSION``).
    Raises:
      ValueError: OpenCV fails to JPEG-encode a frame (message prefixed with ``clip_id``), or a
        value ``encode_example`` refuses (e.g. an integer outside int64).
      cv2.error: OpenCV rejects a frame (e.g. empty, or a channel count other than 1, 3 or 4).
      TypeError: a field has a type ``encode_example`` cannot store (e.g. ``clip_id``, ``split`` or
        ``scene`` given as None or a Path, or ``notes`` mixing types).
    """
    try:
        jpegs = [encode_jpeg(frame, jpeg_quality) for frame in clip.frames]
    except ValueError as error:
        raise ValueError(f"clip {clip_id}: {error}") from None
    return encode_example({
        "version": CLIP_RECORD_VERSION,
        "clip_id": clip_id, "label": int(label), "split": split, "scene": scene,
        "frames": jpegs,
        "keypoints": np.asarray(clip.keypoints, np.float32),
        "sources": np.asarray(clip.sources, np.int8),
        "frame_indices": np.asarray(clip.frame_indices, np.int32),
        "num_source_frames": int(clip.num_source_frames),
        "fps": float(clip.fps),
        "notes": list(clip.notes),
    })


def encode_jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an RGB uint8 image, as the shards store frames.

    Args:
      frame: uint8 (H, W, 3) RGB image (channels are reversed to OpenCV's BGR).
      quality: OpenCV JPEG quality (0-100).
    Returns:
      The JPEG file bytes.
    Raises:
      ValueError: OpenCV reports that the encoding failed.
      cv2.error: OpenCV rejects the array (e.g. empty, or a channel count other than 1, 3 or 4).
    """
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding of a frame failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """An RGB uint8 image from JPEG bytes.

    Args:
      data: JPEG file bytes (e.g. from ``encode_jpeg``).
    Returns:
      uint8 (H, W, 3) RGB image, a channel-reversed view of OpenCV's BGR array (not C-contiguous);
      grayscale JPEGs are decoded to three channels.
    Raises:
      ValueError: ``data`` is not a decodable JPEG.
      cv2.error: ``data`` is empty.
    """
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("a stored frame is not a decodable JPEG; rebuild the shard with data_prep")
    return bgr[..., ::-1]


def decode_clip(data: bytes, frames: Sequence[int] | None = None) -> dict[str, Any]:
    """The fields of ``encode_clip``, with ``frames`` decoded to uint8 (T', S, S, 3) RGB.

    ``frames``: which stored frames to decode (all by default); the per-frame arrays are sliced to
    the same indices, so a training sample decodes only the 16 frames it uses.

    Args:
      data: a serialized clip record (``encode_clip``).
      frames: stored-frame indices to decode, in the order wanted (repeats allowed), or None for all.
    Returns:
      The record's fields: ``frames`` uint8 (T', S, S, 3) RGB, ``keypoints`` float32 (T', 18, 2) in
      crop pixels, ``sources`` int8 (T',), ``frame_indices`` int32 (T',), and as stored ``clip_id``,
      ``label``, ``split``, ``scene``, ``num_source_frames``, ``fps``, ``notes`` and ``version``.
    Raises:
      ValueError: the record's version is not ``CLIP_RECORD_VERSION`` (including records without the
        codec header), the Example is malformed (see ``decode_example``), a stored frame is not a
        decodable JPEG, or ``frames`` is empty.
      IndexError: an index in ``frames`` is out of range.
      google.protobuf.message.DecodeError: ``data`` cannot be parsed as an Example.
    """
    record = decode_example(data)
    if record.get("version") != CLIP_RECORD_VERSION:
        raise ValueError(f"clip record version {record.get('version')!r} is not {CLIP_RECORD_VERSION}: "
                         "the shards were written by another dferjax version; rebuild them with data_prep")
    take = np.arange(len(record["frames"])) if frames is None else np.asarray(frames)
    record["frames"] = np.stack([decode_jpeg(record["frames"][i]) for i in take])
    for name in ("keypoints", "sources", "frame_indices"):
        record[name] = record[name][take]
    return record
