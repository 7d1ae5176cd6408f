"""Tests of dferjax.records: CRC32C, TFRecord framing, index, reader, grain data source, Example codec."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from dferjax.data import records as R


# ------------------------------------------------------------------------------------------------
# Independent reference implementations (written here, not taken from the module)
# ------------------------------------------------------------------------------------------------


def ref_crc32c(data: bytes) -> int:
    """Bitwise reflected CRC-32C, polynomial 0x82F63B78."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def ref_mask(crc: int) -> int:
    rotated = ((crc >> 15) | (crc << 17)) % 2**32
    return (rotated + 0xA282EAD8) % 2**32


def ref_frame(data: bytes) -> bytes:
    length = len(data).to_bytes(8, "little")
    return (
        length
        + ref_mask(ref_crc32c(length)).to_bytes(4, "little")
        + data
        + ref_mask(ref_crc32c(data)).to_bytes(4, "little")
    )


def write_shard(path, payloads) -> str:
    with R.ShardWriter(path, fsync=False) as w:
        for p in payloads:
            w.write(p)
    return os.fspath(path)


# ------------------------------------------------------------------------------------------------
# CRC and framing
# ------------------------------------------------------------------------------------------------

CRC_VECTORS = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"123456789", 0xE3069283),
]


@pytest.mark.parametrize("data,expected", CRC_VECTORS)
def test_crc32c_published_vectors(data, expected):
    assert R.crc32c(data) == expected
    assert ref_crc32c(data) == expected  # the reference itself is right


@pytest.mark.parametrize("data", [b"", b"a", b"123456789", bytes(range(256)) * 3, b"\x00\x01" * 77])
def test_masked_crc_matches_reference(data):
    assert R.masked_crc32c(data) == ref_mask(ref_crc32c(data))
    assert R.mask_crc(R.crc32c(data)) == ref_mask(ref_crc32c(data))


def test_mask_known_values():
    assert R.mask_crc(0) == 0xA282EAD8
    assert R.mask_crc(0xFFFFFFFF) == (0xFFFFFFFF + 0xA282EAD8) % 2**32
    assert R.mask_crc(1) == (1 << 17) + 0xA282EAD8


def test_framing_byte_by_byte(tmp_path):
    data = b"hello tfrecord"
    expected = ref_frame(data)
    # Hand-check the pieces of the hand-built record too.
    assert expected[:8] == b"\x0e" + bytes(7)
    assert expected[12:-4] == data
    assert R.frame_record(data) == expected
    path = write_shard(tmp_path / "one.tfrecord", [data, b""])
    assert Path(path).read_bytes() == expected + ref_frame(b"")


# ------------------------------------------------------------------------------------------------
# Codec
# ------------------------------------------------------------------------------------------------


def all_types_features(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "clip_id": f"clip-{seed:04d}",
        "label": seed % 7,
        "neg": -(2**63),
        "flag": True,
        "fps": 29.97 + seed,
        "nan": float("nan"),
        "raw": b"\x00\xffbytes",
        "frames": [b"\xff\xd8jpeg" + bytes([seed]), b"", b"\xff\xd9" * 3],
        "frames_tuple": (b"a", b"b"),
        "ints": [1, -2, 3, 2**62],
        "floats": [0.1, -1e300, 3.5],
        "float_tuple": (1.25,),
        "strs": ["α", "b"],
        "bools": [True, False],
        "empty": [],
        "empty_tuple": (),
        "f16": rng.standard_normal((3, 4)).astype(np.float16),
        "u8": rng.integers(0, 255, (2, 5, 3), dtype=np.uint8),
        "f32": rng.standard_normal((18, 2)).astype(np.float32),
        "i32": rng.integers(-1000, 1000, (7,), dtype=np.int32),
        "b": rng.random((4, 4)) > 0.5,
        "f64_0d": np.array(3.0),
        "empty_arr": np.zeros((0, 3), np.float32),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
        "big_endian": np.arange(5, dtype=">i4"),
        "np_scalar": np.float32(2.5),
    }


def assert_same(decoded: dict, original: dict) -> None:
    assert list(decoded) == list(original)
    for key, value in original.items():
        got = decoded[key]
        if isinstance(value, np.ndarray):
            assert isinstance(got, np.ndarray), key
            assert got.shape == value.shape, key
            expected_dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
            assert got.dtype == expected_dtype, key
            np.testing.assert_array_equal(got, value)
            assert got.flags.writeable
        elif isinstance(value, np.generic):
            assert type(got) is type(value), key
            assert got == value
        elif isinstance(value, float) and np.isnan(value):
            assert type(got) is float and np.isnan(got)
        else:
            assert type(got) is type(value), key
            assert got == value, key
            if isinstance(value, (list, tuple)):
                assert [type(v) for v in got] == [type(v) for v in value], key


def test_codec_round_trip_all_types():
    features = all_types_features()
    data = R.encode_example(features)
    assert isinstance(data, bytes)
    assert_same(R.decode_example(data), features)
    # Deterministic serialization.
    assert R.encode_example(features) == data


def test_codec_layout_is_plain_example():
    from tensorflow_datasets.proto import tf_example_pb2

    data = R.encode_example({"label": 3, "frames": [b"x", b"y"], "kp": np.ones((2, 2), np.float32)})
    ex = tf_example_pb2.Example.FromString(data)
    f = ex.features.feature
    assert list(f["label"].int64_list.value) == [3]
    assert list(f["frames"].bytes_list.value) == [b"x", b"y"]
    assert list(f["kp/shape"].int64_list.value) == [2, 2]
    assert list(f["kp/dtype"].bytes_list.value) == [b"<f4"]
    assert f["kp"].bytes_list.value[0] == np.ones((2, 2), np.float32).tobytes()
    assert R.CODEC_KEY in f


def test_codec_foreign_example_decodes_generically():
    from tensorflow_datasets.proto import tf_example_pb2

    ex = tf_example_pb2.Example()
    ex.features.feature["a"].int64_list.value.extend([1, 2])
    ex.features.feature["b"].bytes_list.value.append(b"z")
    ex.features.feature["c"].float_list.value.append(0.5)
    assert R.decode_example(ex.SerializeToString()) == {"a": [1, 2], "b": [b"z"], "c": [0.5]}


@pytest.mark.parametrize(
    "features,error",
    [
        ({"x": None}, TypeError),
        ({"x": [1, "a"]}, TypeError),
        ({"x": [1, 2.0]}, TypeError),
        ({"x": {"nested": 1}}, TypeError),
        ({"x": np.array([object()], dtype=object)}, TypeError),
        ({"x": 2**63}, ValueError),
        ({R.CODEC_KEY: 1}, ValueError),
        ({"x": np.zeros(2), "x/shape": [2]}, ValueError),
        ({"x/dtype": b"", "x": np.zeros(2)}, ValueError),
        ({1: 1}, TypeError),
    ],
)
def test_codec_rejects_bad_input(features, error):
    with pytest.raises(error):
        R.encode_example(features)


# ------------------------------------------------------------------------------------------------
# Writer / reader
# ------------------------------------------------------------------------------------------------


def test_shard_round_trip_and_index(tmp_path):
    examples = [all_types_features(i) for i in range(5)]
    path = tmp_path / "s.tfrecord"
    with R.ShardWriter(path, fsync=False) as w:
        for i, ex in enumerate(examples):
            assert w.write_example(ex) == i
        assert len(w) == 5
    assert sorted(os.listdir(tmp_path)) == ["s.tfrecord", "s.tfrecord.index"]
    entries, size = R.read_index(R.index_path(path))
    assert entries.shape == (5, 2) and entries.dtype == np.uint64
    assert size == os.path.getsize(path)
    np.testing.assert_array_equal(entries, R.scan_shard(path))
    # Index layout as documented.
    raw = Path(R.index_path(path)).read_bytes()
    assert raw[:8] == b"DFRIDX1\n" and struct.unpack_from("<QQ", raw, 8) == (5, size)
    assert len(raw) == 24 + 16 * 5
    with R.ShardReader(path) as r:
        assert len(r) == 5
        for i in (3, 0, 4, -1):
            assert_same(R.decode_example(r[i]), examples[i])
        assert [R.decode_example(d)["label"] for d in r] == [ex["label"] for ex in examples]
        with pytest.raises(IndexError):
            r[5]
    assert [R.decode_example(d)["clip_id"] for d in R.iter_records(path)] == [e["clip_id"] for e in examples]


def test_empty_shard(tmp_path):
    path = write_shard(tmp_path / "e.tfrecord", [])
    assert os.path.getsize(path) == 0
    assert len(R.ShardReader(path)) == 0


def test_missing_index_is_rebuilt_with_warning(tmp_path):
    payloads = [b"a" * i for i in range(6)]
    path = write_shard(tmp_path / "s.tfrecord", payloads)
    os.remove(R.index_path(path))
    with pytest.warns(R.MissingIndexWarning, match="missing"):
        r = R.ShardReader(path)
    assert list(r) == payloads
    assert os.path.exists(R.index_path(path))  # saved
    os.remove(R.index_path(path))
    with pytest.raises(FileNotFoundError, match="s.tfrecord"):
        R.ShardReader(path, rebuild_index=False)


def test_stale_index_is_rebuilt(tmp_path):
    path = write_shard(tmp_path / "s.tfrecord", [b"x"])
    with open(path, "ab") as f:
        f.write(ref_frame(b"appended"))
    with pytest.warns(R.MissingIndexWarning, match="stale"):
        r = R.ShardReader(path)
    assert list(r) == [b"x", b"appended"]


def test_writer_atomic_on_exception(tmp_path):
    path = tmp_path / "s.tfrecord"
    with pytest.raises(RuntimeError, match="boom"):
        with R.ShardWriter(path) as w:
            w.write(b"record")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    # An existing good shard survives a failed rewrite.
    write_shard(path, [b"old"])
    with pytest.raises(RuntimeError):
        with R.ShardWriter(path) as w:
            w.write(b"new")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["s.tfrecord", "s.tfrecord.index"]
    assert list(R.ShardReader(path)) == [b"old"]
    with pytest.raises(FileExistsError):
        R.ShardWriter(path, overwrite=False)
    write_shard(path, [b"new", b"er"])
    assert list(R.ShardReader(path)) == [b"new", b"er"]


def test_writer_closed_rejects_writes(tmp_path):
    w = R.ShardWriter(tmp_path / "s.tfrecord", fsync=False)
    w.write(b"a")
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.write(b"b")


# ------------------------------------------------------------------------------------------------
# Corruption
# ------------------------------------------------------------------------------------------------


def _flip(path, pos):
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0x01]))


PAYLOADS = [b"first record", b"second record!", b"third"]


def _record_start(k):
    return sum(len(p) + 16 for p in PAYLOADS[:k])


@pytest.mark.parametrize("where,match", [("data", "data CRC"), ("length_crc", "length CRC"), ("data_crc", "data CRC"), ("length", "length")])
def test_corrupted_byte_raises(tmp_path, where, match):
    path = write_shard(tmp_path / "c.tfrecord", PAYLOADS)
    start = _record_start(1)
    pos = {"data": start + 12 + 3, "length_crc": start + 9, "data_crc": start + 12 + len(PAYLOADS[1]) + 1, "length": start}[where]
    _flip(path, pos)
    r = R.ShardReader(path)
    assert r[0] == PAYLOADS[0] and r[2] == PAYLOADS[2]  # neighbours still fine
    with pytest.raises(R.CorruptRecordError, match=match) as info:
        r[1]
    err = info.value
    assert isinstance(err, ValueError)
    assert err.shard == path and err.record == 1
    msg = str(err)
    assert path in msg and "record 1" in msg and "data_prep" in msg
    # Scanning (the index rebuild path) also catches it.
    with pytest.raises(R.CorruptRecordError, match="record 1"):
        list(R.iter_records(path))


def test_truncated_file_raises(tmp_path):
    path = write_shard(tmp_path / "t.tfrecord", PAYLOADS)
    os.truncate(path, _record_start(2) + 5)
    r = R.ShardReader(path)  # index kept: intact records stay readable
    assert r[1] == PAYLOADS[1]
    with pytest.raises(R.TruncatedRecordError) as info:
        r[2]
    assert isinstance(info.value, R.CorruptRecordError)
    assert path in str(info.value) and "record 2" in str(info.value)
    os.remove(R.index_path(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", R.MissingIndexWarning)
        with pytest.raises(R.TruncatedRecordError, match="record 2"):
            R.ShardReader(path)
    os.truncate(path, 3)  # inside the first header
    with pytest.raises(R.TruncatedRecordError, match="record 0"):
        list(R.iter_records(path))


# ------------------------------------------------------------------------------------------------
# Sharded data source, pickling, grain
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def three_shards(tmp_path):
    counts = [3, 0, 4, 2]
    paths, expected = [], []
    g = 0
    for s, n in enumerate(counts):
        payloads = []
        for _ in range(n):
            payloads.append(R.encode_example({"global": g, "shard": s, "kp": np.full((18, 2), g, np.float32)}))
            g += 1
        paths.append(write_shard(tmp_path / f"train-{s:05d}-of-{len(counts):05d}.tfrecord", payloads))
        expected.extend(payloads)
    return tmp_path, paths, expected


def test_sharded_source_global_indices(three_shards):
    root, paths, expected = three_shards
    ds = R.ShardedDataSource(paths)
    assert len(ds) == len(expected) == 9
    assert ds.counts == [3, 0, 4, 2]
    assert [ds[i] for i in range(len(ds))] == expected
    assert ds[-1] == expected[-1]
    assert ds.locate(3) == (paths[2], 0) and ds.locate(7) == (paths[3], 0) and ds.locate(2) == (paths[0], 2)
    assert R.decode_example(ds[np.int64(6)])["global"] == 6
    with pytest.raises(IndexError):
        ds[9]
    assert "num_shards=4" in repr(ds) and "num_records=9" in repr(ds)
    # Directory and glob forms give the same order.
    assert R.ShardedDataSource(root).shards == paths
    assert R.ShardedDataSource(str(root / "train-*.tfrecord")).shards == paths
    with pytest.raises(FileNotFoundError):
        R.ShardedDataSource(str(root / "nothing-*.tfrecord"))


def test_sharded_source_pickles(three_shards):
    _, paths, expected = three_shards
    ds = R.ShardedDataSource(paths)
    _ = ds[4]  # open a file before pickling
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds) and repr(clone) == repr(ds)
    assert [clone[i] for i in reversed(range(len(clone)))] == expected[::-1]
    reader = pickle.loads(pickle.dumps(R.ShardReader(paths[0])))
    assert list(reader) == expected[:3]


def _read_all(ds):
    return [ds[i] for i in range(len(ds))]


def test_sharded_source_threads_and_processes(three_shards):
    _, paths, expected = three_shards
    ds = R.ShardedDataSource(paths)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ds.__getitem__, list(range(len(ds))) * 20)) == expected * 20
    if "fork" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
            assert list(pool.map(_read_all, [ds, ds])) == [expected, expected]


def test_grain_protocol_and_pipelines(three_shards):
    grain = pytest.importorskip("grain")
    _, paths, expected = three_shards
    ds = R.ShardedDataSource(paths)
    assert isinstance(ds, grain.sources.RandomAccessDataSource)
    assert list(grain.MapDataset.source(ds)) == expected
    decoded = grain.MapDataset.source(ds).map(R.decode_example)
    assert [d["global"] for d in decoded] == list(range(9))

    import grain.python as gp

    loader = gp.DataLoader(
        data_source=ds,
        sampler=gp.SequentialSampler(len(ds), gp.NoSharding()),
        worker_count=0,
    )
    assert [rec for rec in loader] == expected


def test_tensorflow_reads_shard(three_shards):
    tf = pytest.importorskip("tensorflow")
    _, paths, expected = three_shards
    got = [t.numpy() for p in paths for t in tf.data.TFRecordDataset(p)]
    assert got == expected
    ex = tf.train.Example.FromString(got[0])
    assert list(ex.features.feature["global"].int64_list.value) == [0]


# --- the clip record --------------------------------------------------------------------------------

def _prepared_clip(t=6, size=32):
    from dferjax.data.clips import PrepConfig, from_crops
    rng = np.random.default_rng(5)
    # Smooth frames (JPEG keeps them close) and landmarks inside the crop.
    yy, xx = np.mgrid[0:size, 0:size]
    crops = np.stack([np.dstack([(xx * 7 + k * 10) % 256, (yy * 7) % 256, np.full_like(xx, 128 + k)])
                      for k in range(t)]).astype(np.uint8)
    landmarks = rng.random((t, 68, 2)).astype(np.float32) * size
    clip = from_crops(crops, landmarks, np.arange(t) % 3, PrepConfig(image_size=size))
    clip.notes = ["only 6 frames"]
    return clip


def test_clip_record_round_trip(tmp_path):
    clip = _prepared_clip()
    data = R.encode_clip("00042", 3, "fold2", "", clip)
    with R.ShardWriter(tmp_path / "a.tfrecord") as w:
        w.write(data)
    got = R.decode_clip(R.ShardReader(tmp_path / "a.tfrecord").read_record(0))
    assert (got["clip_id"], got["label"], got["split"], got["scene"]) == ("00042", 3, "fold2", "")
    assert got["notes"] == ["only 6 frames"] and got["num_source_frames"] == 6
    np.testing.assert_array_equal(got["keypoints"], clip.keypoints)
    assert "heatmaps" not in got          # version 2: each model renders its own from the key-points
    np.testing.assert_array_equal(got["sources"], clip.sources)
    assert got["frames"].shape == clip.frames.shape and got["frames"].dtype == np.uint8
    assert np.abs(got["frames"].astype(int) - clip.frames).mean() < 3       # JPEG at quality 95


def test_clip_record_decodes_only_the_frames_asked_for():
    clip = _prepared_clip()
    got = R.decode_clip(R.encode_clip("x", 0, "train", "", clip), frames=[4, 1, 1])
    assert got["frames"].shape[0] == 3
    np.testing.assert_array_equal(got["keypoints"], clip.keypoints[[4, 1, 1]])
    np.testing.assert_array_equal(got["frame_indices"], [4, 1, 1])


def test_version_1_clip_records_are_refused_with_a_rebuild_message():
    clip = _prepared_clip()
    fields = R.decode_example(R.encode_clip("x", 0, "train", "", clip))
    fields["version"] = 1
    with pytest.raises(ValueError, match="version 1 is not 2.*rebuild"):
        R.decode_clip(R.encode_example(fields))
